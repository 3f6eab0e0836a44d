"""The built wheel installs everything under the one name `metalens` and nothing else at top level."""
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ["metalens", "metalens.tasks", "metalens.probes", "metalens.introspect", "metalens.steering",
               "metalens.circuits", "metalens.analyses"]
CLASHING = ["probes", "steering", "circuits", "analyses", "introspect", "tasks"]


def test_wheel_installs_only_metalens_and_every_area_imports_from_it(tmp_path):
    wheels = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("metalens-*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"metalens"}

    env_dir = tmp_path / "clean"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path)
    assert not [name for name in CLASHING if (site / name).exists()]
    assert (site / "metalens" / "probes" / "data" / "moral.jsonl").exists()  # package data travels

    # Dependencies come from this environment's site-packages, metalens only from the clean install.
    deps = sysconfig.get_paths()["purelib"]
    code = ("import importlib, metalens\n"
            f"mods = [importlib.import_module(m) for m in {SUBPACKAGES!r}]\n"
            "print(metalens.__file__)\n")
    env = {**os.environ, "PYTHONPATH": deps}
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.stdout.strip().startswith(str(site))
