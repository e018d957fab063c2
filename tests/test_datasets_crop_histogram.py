"""The bulk crop page's bucket histogram follows the trainer chosen: an HTMX partial for the
form's own images (all, filtered or selected), answered on a change of trainer."""
import re

from tests.datasets_helpers import image_named, open_dataset, save_image, user_root


def histogram(html: str) -> dict[str, int]:
    """{bucket label: images} as the page's meters say it."""
    return {label: int(n) for n, label in re.findall(r'aria-label="(\d+) images? in ([\d×]+)"', html)}


def make_set(app):
    folder = user_root(app) / "sizes"
    for n in range(3):
        save_image(folder / f"wide {n}.png", "red", (1200, 800))  # 3:2
    save_image(folder / "square.png", "blue", (800, 800))
    return folder


def test_the_histogram_partial_follows_the_trainer(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_set(app))
    page = client.get(f"/datasets/{dataset.id}/crop-buckets").get_data(as_text=True)
    assert 'hx-post="/datasets/%d/crop-buckets/histogram"' % dataset.id in page and 'hx-target="#bucket-histogram"' in page
    assert histogram(page) == {"1216×832": 3, "1024×1024": 1}  # kohya SDXL, the default
    expected = {"kohya-sdxl": {"1216×832": 3, "1024×1024": 1}, "kohya-sd15": {"640×384": 3, "512×512": 1},
                "ai-toolkit-512": {"576×384": 3, "512×512": 1}}
    for trainer, counts in expected.items():
        response = client.post(f"/datasets/{dataset.id}/crop-buckets/histogram",
                               data={"scope": "all", "trainer": trainer}, headers={"HX-Request": "true"})
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in body
        assert histogram(body) == counts, trainer
        assert f'data-trainer="{trainer}"' in body
    # An unknown trainer falls back to the default, as the page does.
    body = client.post(f"/datasets/{dataset.id}/crop-buckets/histogram", data={"trainer": "nope"}).get_data(as_text=True)
    assert histogram(body) == {"1216×832": 3, "1024×1024": 1}


def test_the_partial_counts_only_the_form_s_scope(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_set(app))
    square = image_named(dataset, "square.png")
    wide = image_named(dataset, "wide 0.png")
    body = client.post(f"/datasets/{dataset.id}/crop-buckets/histogram",
                       data={"scope": "selected", "ids": [square.id, wide.id], "trainer": "kohya-sd15"}).get_data(as_text=True)
    assert histogram(body) == {"640×384": 1, "512×512": 1}
    # A filter that cannot be used is said (422), never a server error.
    bad = client.post(f"/datasets/{dataset.id}/crop-buckets/histogram",
                      data={"scope": "filtered", "q": "(((", "trainer": "kohya-sd15"}, headers={"HX-Request": "true"})
    assert bad.status_code == 422
    # Another user's dataset is not there for this one.
    assert client.post("/datasets/999/crop-buckets/histogram", data={"trainer": "kohya-sd15"}).status_code == 404
