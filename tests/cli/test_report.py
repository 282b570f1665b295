"""`exp report`: a self-contained page, checked by rendering it in headless Chromium.

`fixtures/report_run/` is a hand-made run directory (fingerprints are not real
hashes): three attempts, a SIGKILL after step 25 that the next attempt redoes
(steps 21..25 recorded twice), a preemption at 30, and two audit verdicts.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from expspec.runtime.runs.report_data import read_run
from tests.conftest import EXAMPLES, run_exp

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
BROWSERS = ("chromium", "chromium-headless-shell", "google-chrome", "google-chrome-stable")


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _images(html: str) -> dict[str, bytes]:
    images = {alt: base64.b64decode(data) for alt, data in IMG.findall(html)}
    assert html.count("<img") == len(images), "an image is not an inline PNG"
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images.values())
    return images


def _render(page: Path, screenshot: Path) -> list[dict]:
    """Open the page in headless Chromium; every image's load state. Skips when Chromium is absent."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("headless Chromium and chromedriver not on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(30)
        driver.set_window_size(1280, 900)
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images, i => "
            "({alt: i.alt, complete: i.complete, width: i.naturalWidth, scheme: i.currentSrc.split(':')[0]}));"
        )
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1280, min(int(height), 16000))
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert fetched == [], f"the page fetched {fetched}"
    return images


def test_report_of_a_resumed_digits_run_renders_with_every_image_loaded(tmp_path: Path):
    run_dir = tmp_path / "run"
    args = ["run", str(EXAMPLES / "digits_mlp.toml"), "train.steps=60", "train.eval_every=20", "train.log_every=5"]
    for extra in (["--stop-at", "30"], []):
        result = run_exp(*args, "--run-dir", str(run_dir), "--quiet", *extra)
        assert result.returncode == 0, result.stderr
    before = _snapshot(run_dir)

    result = run_exp("report", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = tmp_path / "report.html"
    html = page.read_text(encoding="utf-8")
    assert _snapshot(run_dir) == before, "the report touched the run directory"

    images = _images(html)
    assert set(images) == {
        "Training loss",
        "Eval metrics",
        "Learning rate",
        "Steps per second",
        "Other training metrics",
        "Per-step agreement",
    }
    assert not re.search(r"https?://", html), "the page references the network"
    assert "Content-Security-Policy" in html and ">finished<" in html
    assert "60 of 60" in html and "digits-mlp" in html

    shot = tmp_path / "report.png"
    loaded = _render(page, shot)
    assert len(loaded) == len(images)
    assert all(i["complete"] and i["width"] > 0 and i["scheme"] == "data" for i in loaded), loaded
    assert shot.stat().st_size > 50_000


def test_fixture_marks_redone_steps_resumes_and_audits(tmp_path: Path):
    run = read_run(FIXTURE)
    assert [s for s, v in run.agreement.items() if v == "agree"] == [21, 22, 23, 24, 25]
    assert set(run.agreement.values()) == {"agree", "single"} and len(run.agreement) == 41
    assert run.markers == [("resume", 20), ("preempted", 30), ("resume", 30)]
    assert (run.outcome, run.attempts, len(run.audits)) == ("finished", 3, 2)
    assert [r["step"] for r in run.train].count(25) == 1, "a step logged twice is drawn once"

    result = run_exp("report", str(FIXTURE), "-o", str(tmp_path / "page.html"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert len(_images(html)) == 6
    assert html.count('<span class="badge passed">') == 2 and "3 checkpoints restore" in html
    assert "5 by several attempts that agree, 0 that disagree, 36 by one attempt" in html


def test_disagreeing_attempts_are_red_and_torn_lines_are_skipped(tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    with (run_dir / "ledger.jsonl").open("a", encoding="utf-8") as ledger:
        ledger.write('{"kind":"step","step":40,"attempt":3,"params":"0","opt":"0","leaves":"00"}\n{"kind":"st')
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as metrics:  # a diverged step
        metrics.write('{"split":"train","step":41,"loss":NaN,"lr":Infinity,"steps_per_s":0.0,"time":0}\n')
    with (run_dir / "audits.jsonl").open("a", encoding="utf-8") as audits:  # a killed audit, then another
        audits.write(
            '{"time":1767225700,"che\n{"time":1767225800,"check":"integrity","status":"failed","summary":"x"}\n'
        )
    before = _snapshot(run_dir)
    result = run_exp("report", str(run_dir), "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_run(run_dir).agreement[40] == "disagree"
    assert "attempts recorded different bits at steps 40." in result.stdout
    assert '<span class="badge failed">' in result.stdout and result.stdout.count('class="badge passed"') == 2
    assert _snapshot(run_dir) == before and list(tmp_path.iterdir()) == [run_dir]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such directory"),
        (lambda d: d.mkdir(), "not a run directory (no plan.json)"),
        (lambda d: shutil.copytree(FIXTURE, d) and (d / "plan.json").write_text("{"), "not valid JSON"),
        (
            lambda d: shutil.copytree(FIXTURE, d) and (d / "metrics.jsonl").write_text("nope\n{}\n"),
            "a line is not valid JSON",
        ),
    ],
    ids=["missing", "not-a-run", "bad-plan", "bad-metrics"],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, setup, message):
    run_dir = tmp_path / "run"
    setup(run_dir)
    work = tmp_path / "work"
    work.mkdir()
    result = run_exp("report", str(run_dir), cwd=work)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and list(work.iterdir()) == []


def test_output_into_a_missing_folder_is_refused(tmp_path: Path):
    result = run_exp("report", str(FIXTURE), "-o", str(tmp_path / "no" / "page.html"), cwd=tmp_path)
    assert result.returncode == 2 and "cannot write" in result.stderr
    assert list(tmp_path.iterdir()) == []
