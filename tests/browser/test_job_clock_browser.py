"""A running job's clock keeps ticking while nothing else about the job changes (a long cold boot):
the status polls then answer 304, which the browser hands to HTMX as the cached 200, swapping in the
same markup every second."""
import re



def seconds(text: str) -> int:
    minutes, secs = text.strip().split(":")
    return int(minutes) * 60 + int(secs)


def test_the_clock_ticks_through_a_phase_that_does_not_change(logged_in, live_server, fake_replicate):
    page = logged_in
    fake_replicate.polls_per_state = 8  # a long "starting" phase: the job's row does not change
    statuses = []
    page.on("response", lambda r: statuses.append(r.status) if "/status" in r.url else None)
    page.get_by_label("Prompt", exact=True).fill("a clock that ticks")
    page.get_by_role("button", name="Generate").click()
    job = page.locator(".job").first
    page.wait_for_function("() => /Starting on Replicate/.test(document.querySelector('.job .job-line')?.textContent || '')")
    started = seconds(job.locator(".clock").inner_text())
    polls_before = len(statuses)
    page.wait_for_timeout(4500)  # four or more polls of an unchanged job
    assert len(statuses) - polls_before >= 3
    line = " ".join(job.locator(".job-line").inner_text().split())
    assert line.startswith("Starting on Replicate"), line  # still the same phase: the markup did not change
    assert seconds(job.locator(".clock").inner_text()) >= started + 4, line
    job.locator(".status.succeeded").wait_for(timeout=60_000)
    assert re.fullmatch(r"Done · 1 image \d+:\d\d", " ".join(job.locator(".job-line").inner_text().split()))
