import subprocess
import sys

import gpmcli

COMMANDS = ["sample", "fid", "stats", "convert", "train", "models"]


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and gpmcli.__version__ in out


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "gpmcli", "--help"], capture_output=True, text=True, check=True).stdout
    for c in COMMANDS:
        assert c in out
    out = subprocess.run([sys.executable, "-m", "gpmcli", "models", "--help"], capture_output=True, text=True).stdout
    for c in ("list", "pull", "info", "verify"):
        assert c in out


def _command_paths():
    import typer.main

    from gpmcli.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, path + [name])

    return list(walk(typer.main.get_command(app), []))


def test_every_help_page_renders(cli):
    """Each command's --help exits 0 and shows square brackets literally (help text goes through rich markup: an
    unescaped "[/SUB]" once crashed `gpm sample --help`)."""
    paths = _command_paths()
    assert ["sample"] in paths and ["models", "pull"] in paths
    for path in paths:
        code, out, err = cli(*path, "--help")
        assert code == 0, (path, out, err)
        assert "Usage" in out, path
    for path, text in ((["sample"], "NAME[@REV][/SUB]"), (["models", "pull"], "[hf:]ORG/NAME[@REV][/SUBFOLDER]"),
                       (["convert"], "NAME[@REV]"), (["models", "info"], "REPO[@REV]")):
        out = cli(*path, "--help")[1]
        assert text in "".join(out.split()).replace("│", ""), path


def test_unknown_model_is_one_line_usage_error():
    p = subprocess.run([sys.executable, "-m", "gpmcli", "-q", "sample", "--model", "nope", "-o", "/tmp/x"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "unknown --model" in p.stderr


def test_ci_runs_the_readme_test_command():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip().split("&&")[-1].strip()
    ci = (root / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "torch==2.13.0" in ci and ci.index("torch==2.13.0") < ci.index('-e ".[test]"')


def test_models_list_json_is_valid(cli):
    import json

    code, out, err = cli("models", "list", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"bundles", "cache", "cache_dir", "registry"} <= set(data)
    assert any(b["name"] == "toy-pentagon" for b in data["bundles"])


def test_gpm_errors_are_one_line_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gpmcli", "models", "info", str(tmp_path / "nope.pth")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    # brackets in a message are text, not console markup
    p = subprocess.run([sys.executable, "-m", "gpmcli", "models", "info", "hf:not a repo"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "hf:ORG/NAME[@REV][/SUBFOLDER]" in p.stderr


def test_a_flag_the_sampler_does_not_use_is_a_usage_error(cli, tmp_path):
    """`--steps` means nothing to DDLS (its chain length is --ddls-steps): refuse it rather than ignore it."""
    out = tmp_path / "o"
    code, _, err = cli("sample", "--model", "ddls", "-c", "toy-pentagon-ddls", "-n", "2", "--steps", "5", "-o", out)
    assert code == 2 and "does not use --steps" in err and not out.exists()
    code, _, err = cli("sample", "--model", "gan", "-n", "2", "--snr", "0.1", "--sde", "vp", "-o", out)
    assert code == 2 and "--sde, --snr" in err and not out.exists()
    code, _, err = cli("sample", "--model", "ddls", "-c", "toy-pentagon-ddls", "-n", "2", "--ddls-steps", "3", "-o", out)
    assert code == 0 and (out / "run.json").exists(), err
