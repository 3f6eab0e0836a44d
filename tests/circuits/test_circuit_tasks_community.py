"""Community circuit tasks: IOI, greater-than (prob_diff, digit form), and CSV pair files (EAP-IG layouts)."""
import math
import re

import pytest
import torch
from metalens.circuits import ContrastTask, HeadsConfig, make_task, run_heads
from metalens.circuits.metrics import metric_per_pair, prepare
from metalens.circuits.tasks import (
    answer_token,
    greater_than_task,
    ioi_task,
    load_task,
    two_digit_years,
)


def _two_digit_tokenizer():
    """Word-level tokenizer with one token per character and per two-digit number (GPT-2-like years)."""
    import string

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<unk>"] + [f"{i:02d}" for i in range(100)] + list(dict.fromkeys(string.printable))
    tok = Tokenizer(models.WordLevel({p: i for i, p in enumerate(pieces)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\d\d|."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# IOI


def test_ioi_pairs_are_half_abba_half_baba_and_corrupt_only_the_subject(tiny_gemma):
    tok = tiny_gemma.tokenizer
    task = ioi_task(tok, n=8, seed=3)
    io_first = 0
    for clean, corrupted, answer, wrong in zip(task.clean, task.corrupted, task.answers, task.wrong):
        io, subject = answer.strip(), wrong.strip()
        a, b = re.search(r"\b([A-Z]\w*) and ([A-Z]\w*)\b", clean).groups()
        assert {a, b} == {io, subject}
        io_first += a == io
        # the corrupted prompt is the clean one with the repeated subject (its last name) swapped for a third name
        at = clean.rindex(f" {subject} ") + 1
        other = corrupted[at:at + len(subject)]
        assert corrupted[:at] == clean[:at] and corrupted[at + len(subject):] == clean[at + len(subject):]
        assert other not in (io, subject) and len(tok(clean)["input_ids"]) == len(tok(corrupted)["input_ids"])
        assert answer_token(tok, clean, answer) != answer_token(tok, clean, wrong)
    assert io_first == 4  # ABBA and BABA, half each
    assert len({c.split(",")[0].split(" ")[0] for c in task.clean}) > 1  # several templates


def test_ioi_uses_space_prefixed_single_token_names_when_the_tokenizer_has_them():
    from metalens.circuits.community import IOI_NAMES, IOI_TEMPLATES
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w for t in IOI_TEMPLATES for w in re.findall(r"\w+|[^\w\s]", t.format(A="", B="", S=""))}
    pieces = ["<pad>", "<unk>", *sorted(words), *(f"Ġ{w}" for w in sorted(words | set(IOI_NAMES)))]
    tok = Tokenizer(models.WordLevel({p: i for i, p in enumerate(pieces)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    task = ioi_task(tok, n=4)
    assert all(a.startswith(" ") and a.strip() in IOI_NAMES for a in task.answers)
    assert all(c.endswith(" to") for c in task.clean)


def test_ioi_without_enough_single_token_names_or_letters_says_so():
    class Bytes:  # every name and letter is two tokens
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [b for ch in text.encode() for b in (0, ch)]}

    with pytest.raises(ValueError, match="single-token names"):
        ioi_task(Bytes(), n=2)


# greater-than and prob_diff


def test_prob_diff_is_good_minus_bad_probability_mass(tiny_gemma):
    task = ContrastTask("gt", ["ab", "cd"], ["xb", "xd"], ["e", "f"], ["g", "h"], "prob_diff",
                        good=[["e", "f"], ["g"]], bad=[["g"], ["h", "i", "j"]])
    batch = prepare(tiny_gemma, task)
    tok = tiny_gemma.tokenizer
    logits = torch.randn(2, tiny_gemma.d_vocab, generator=torch.Generator().manual_seed(1))
    p = logits.softmax(-1)
    e, f, g, h, i, j = (tok.convert_tokens_to_ids(c) for c in "efghij")
    expected = torch.stack([p[0, e] + p[0, f] - p[0, g], p[1, g] - p[1, h] - p[1, i] - p[1, j]])
    assert torch.allclose(metric_per_pair(batch, logits), expected, atol=1e-6)
    assert batch.good.tolist() == [sorted([e, f]), [g, -1]]  # ids padded with -1


def test_prob_diff_refuses_a_token_in_both_sets(tiny_gemma):
    task = ContrastTask("gt", ["ab"], ["xb"], ["e"], ["g"], "prob_diff", good=[["e", "ex"]], bad=[["e"]])
    with pytest.raises(ValueError, match="both a good and a bad"):
        prepare(tiny_gemma, task)


def test_prob_diff_needs_answer_sets():
    with pytest.raises(ValueError, match="good.*bad"):
        ContrastTask("t", ["a"], ["b"], ["c"], ["d"], "prob_diff")


def test_digit_tokenizers_get_the_digit_form_of_greater_than(tiny_gemma):
    tok = tiny_gemma.tokenizer
    assert not two_digit_years(tok)
    task = greater_than_task(tok, n=12, seed=1)
    assert task.metric == "prob_diff"
    for clean, corrupted, good, bad in zip(task.clean, task.corrupted, task.good, task.bad):
        start = re.search(r"from the year (\d{4}) to the year (\d{3})$", clean)
        year, prefix = start.groups()
        assert year[:3] == prefix and year[3] != "9"  # the prompt carries the tens digit
        assert good == [str(d) for d in range(int(year[3]) + 1, 10)] and bad == [str(d) for d in range(int(year[3]) + 1)]
        assert corrupted == clean.replace(f"year {year}", f"year {year[:2]}01")
        assert len(tok(clean)["input_ids"]) == len(tok(corrupted)["input_ids"])


def test_two_digit_tokenizers_keep_hanna_et_al_s_form():
    tok = _two_digit_tokenizer()
    assert two_digit_years(tok)
    task = greater_than_task(tok, n=6, seed=2)
    for clean, corrupted, good, bad in zip(task.clean, task.corrupted, task.good, task.bad):
        century, yy = re.search(r"from the year (\d\d)(\d\d) to the year \1$", clean).groups()
        assert good == [f"{y:02d}" for y in range(int(yy) + 1, 100)] and bad == [f"{y:02d}" for y in range(int(yy) + 1)]
        assert corrupted.endswith(f"year {century}01 to the year {century}")
        assert answer_token(tok, clean, good[0]) == tok.convert_tokens_to_ids(good[0])  # one token per year


def test_greater_than_metric_drops_when_the_start_year_is_corrupted(tiny_gemma):
    """A model that puts all its mass on years after the start scores +1 clean and less on the 01 prompt."""
    task = greater_than_task(tiny_gemma.tokenizer, n=6, seed=0)
    batch = prepare(tiny_gemma, task)
    digit_ids = [tiny_gemma.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]

    def after(units):  # logits of an ideal model that knows the start's units digit
        logits = torch.full((tiny_gemma.d_vocab,), -1e4)
        logits[[digit_ids[d] for d in range(units + 1, 10)]] = 0.0
        return logits

    clean = torch.stack([after(int(c[-(len(" to the year 175") + 1)])) for c in task.clean])
    corrupted = torch.stack([after(1) for _ in task.clean])  # start year ..01
    units = torch.tensor([int(c[-(len(" to the year 175") + 1)]) for c in task.clean])
    assert torch.allclose(metric_per_pair(batch, clean), torch.ones(6))
    expected = (8 - 2 * (units - 1).clamp(min=0)) / 8  # mass spread over 2..9: good 9-max(u,1), bad max(u-1,0)
    assert torch.allclose(metric_per_pair(batch, corrupted), expected.float(), atol=1e-5)


def test_prob_diff_tasks_survive_select_and_jsonl(tmp_path, tiny_gemma):
    task = greater_than_task(tiny_gemma.tokenizer, n=4)
    picked = task.select([2, 0])
    assert picked.good == [task.good[2], task.good[0]] and picked.bad[1] == task.bad[0]
    task.save_jsonl(tmp_path / "gt.jsonl")
    back = load_task(tmp_path / "gt.jsonl", metric="prob_diff")
    assert back.good == task.good and back.bad == task.bad
    assert ContrastTask.from_dict(task.to_dict()).bad == task.bad
    assert task.with_metric("logit_diff").good == task.good


# CSV files


def test_csv_with_answers_is_a_logit_diff_task(tmp_path):
    path = _write(tmp_path / "pairs.csv", 'clean,corrupted,answer,wrong_answer\n"Paris, France",Rome,x, y\nab,cd,e,f\n')
    task = load_task(path)
    assert task.clean == ["Paris, France", "ab"] and task.answers == ["x", "e"] and task.wrong == [" y", "f"]
    assert task.metric == "logit_diff"


def test_eap_ig_greater_than_csv_gets_the_tens_digit_on_a_digit_tokenizer(tmp_path, tiny_gemma):
    path = _write(tmp_path / "gt.csv", "clean,corrupted,label\n"
                  "The contract lasted from the year 1352 to the year 13,The contract lasted from the year 1301 to the year 13,52\n"
                  "The plan lasted from the year 1659 to the year 16,The plan lasted from the year 1601 to the year 16,59\n"
                  "The war lasted from the year 1705 to the year 17,The war lasted from the year 1701 to the year 17,05\n")
    with pytest.warns(UserWarning, match="dropped 1"):
        task = load_task(path, tokenizer=tiny_gemma.tokenizer)
    assert task.metric == "prob_diff" and len(task) == 2  # 1659: no later year in the decade 165x
    assert task.clean[0].endswith("1352 to the year 135") and task.corrupted[0].endswith("1301 to the year 135")
    assert task.good[0] == list("3456789") and task.bad[0] == list("012")
    assert task.clean[1].endswith("to the year 170") and task.bad[1] == list("012345")


def test_eap_ig_greater_than_csv_keeps_two_digit_years(tmp_path):
    path = _write(tmp_path / "gt.csv", "clean,corrupted,label\n"
                  "The plan lasted from the year 1659 to the year 16,The plan lasted from the year 1601 to the year 16,59\n")
    task = load_task(path, tokenizer=_two_digit_tokenizer())
    assert task.clean[0].endswith("to the year 16") and task.good[0][0] == "60" and task.bad[0][-1] == "59"
    assert len(task.good[0]) == 40 and len(task.bad[0]) == 60


def test_eap_ig_ioi_csv_reads_answers_from_the_names(tmp_path, tiny_gemma):
    path = _write(tmp_path / "ioi.csv", ",clean,corrupted,corrupted_hard,correct_idx,incorrect_idx\n"
                  '470,"Then, Aaron and Amber were working at the house. Aaron decided to give a drink to",'
                  '"Then, Aaron and Amber were working at the house. Tiffy decided to give a drink to",'
                  '"Then, Aaron and Amber were working at the house. Amber decided to give a drink to",47764,26757\n'
                  '12,"When Gregory and Richard got a kiss at the station, Richard decided to give it to",'
                  '"When Gregory and Richard got a kiss at the station, Megan decided to give it to",x,1,2\n')
    task = load_task(path)
    assert task.answers == [" Amber", " Gregory"] and task.wrong == [" Aaron", " Richard"]
    assert task.metric == "logit_diff" and task.corrupted[1].endswith("Megan decided to give it to")
    with pytest.warns(UserWarning, match="dropped 1 of 2"):  # 'Megan' is one character shorter than 'Richard'
        assert len(load_task(path, tokenizer=tiny_gemma.tokenizer)) == 1


def test_unknown_csv_header_names_the_accepted_layouts(tmp_path):
    path = _write(tmp_path / "odd.csv", "prompt,target\na,b\n")
    with pytest.raises(ValueError, match="clean,corrupted,answer,wrong_answer.*clean,corrupted,label"):
        load_task(path)


def test_label_csv_that_is_not_greater_than_is_refused(tmp_path, tiny_gemma):
    path = _write(tmp_path / "labels.csv", "clean,corrupted,label\nThe sky is,The sea is,blue\n")
    with pytest.raises(ValueError, match="greater-than"):
        load_task(path, tokenizer=tiny_gemma.tokenizer)


def test_make_task_reads_a_csv_and_cuts_it_to_n(tmp_path, tiny_gemma):
    rows = "".join(f"ab{i},cd{i},e,f\n" for i in range(5))
    path = _write(tmp_path / "pairs.csv", "clean,corrupted,answer,wrong_answer\n" + rows)
    task = make_task(str(path), tiny_gemma.tokenizer, n=3, metric="logprob")
    assert task.clean == ["ab0", "ab1", "ab2"] and task.metric == "logprob"


# the heads workflow


@pytest.mark.parametrize("name, metric", [("greater-than", "prob_diff"), ("ioi", "logit_diff")])
def test_run_heads_scores_community_tasks(tiny_gemma, name, metric):
    task = make_task(name, tiny_gemma.tokenizer, n=3)
    assert task.metric == metric  # the task's own metric when none is asked for
    result = run_heads(tiny_gemma, HeadsConfig(task=task, methods=("attribution", "exact"), detect=False),
                       progress=False)
    n_layers, n_heads = 3, 4
    for scores in result.scores.values():
        assert scores.shape == (n_layers, n_heads) and torch.isfinite(scores).all() and scores.abs().sum() > 0
    assert math.isfinite(result.spearman_vs_exact["attribution"])
    assert result.metadata["metric"] == metric
