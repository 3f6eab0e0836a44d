"""The arithmetic grader reads the stated answer: after 'answer is', else the last number."""
from metalens.tasks.arithmetic import Problem, extract_answer, grade

SEVEN_TIMES_ONE = Problem("7 * 1", 7, ("7 * 1 = 7",), 1)
THREE_PLUS_FOUR = Problem("3 + 4", 7, ("3 + 4 = 7",), 1)


def test_an_equation_without_answer_is_is_graded_on_its_result():
    assert grade(THREE_PLUS_FOUR, " 3 + 4 = 7.")  # the old first-number rule read 3


def test_a_wrong_result_is_not_saved_by_an_operand_that_equals_the_answer():
    assert not grade(SEVEN_TIMES_ONE, " 7 * 1 = 8.")  # the old rule read the operand 7


def test_the_number_after_answer_is_wins_over_later_numbers():
    assert extract_answer(" 3 + 4 = 7. The answer is 7. Next: 9 + 1") == 7
    assert extract_answer("The answer is 5, no wait, the answer is 6.") == 6
    assert extract_answer("no digits here") is None
    assert extract_answer("the answer is unclear, maybe 12") == 12


def test_level_zero_draws_small_sums_with_right_answers_the_same_for_a_seed():
    from metalens.tasks.arithmetic import make_problems

    problems = make_problems(24, levels=(0,), seed=3)
    assert problems == make_problems(24, levels=(0,), seed=3) != make_problems(24, levels=(0,), seed=4)
    for p in problems:
        a, op, b = p.question.split()
        assert op == "+" and 0 <= int(a) <= 5 and 0 <= int(b) <= 5 and p.level == 0
        assert p.answer == int(a) + int(b) and grade(p, p.solution)
    mixed = make_problems(48, levels=(0, 1), seed=0)  # results/ziprc-gemma's regime2: 24 of each
    assert [p.level for p in mixed] == [0, 1] * 24 and len({p.question for p in mixed}) == 48


def test_the_older_levels_draw_the_same_problems_as_before_level_zero():
    from metalens.tasks.arithmetic import make_problems

    assert [p.question for p in make_problems(4, levels=(1, 2, 3, 4), seed=0)] == [
        "7 + 1", "9 - 13", "5 - 6 * 4", "17 + 10 + 4"]
