"""The README's commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                  if line.startswith("python3 -m venv")][-1]
    section = readme.split("## Run the tests", 1)[1]
    assert re.search(r"```sh\n(.*?)\n```", section, re.S).group(1) == ci_command


def test_readme_run_command_installs_and_starts_the_app():
    section = (ROOT / "README.md").read_text().split("## Run it", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)
    assert "pip install -e ." in command and command.endswith("tessera up")
