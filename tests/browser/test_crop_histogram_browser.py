"""On "Crop to buckets…", choosing another trainer redraws the bucket histogram for it, no reload."""
from PIL import Image
from playwright.sync_api import expect


def test_the_bucket_histogram_follows_the_trainer(logged_in, live_server, live_user):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "sizes"
    folder.mkdir(parents=True)
    for n in range(3):
        Image.new("RGB", (1200, 800), (n * 70, 40, 40)).save(folder / f"wide {n}.png")
    Image.new("RGB", (800, 800), "blue").save(folder / "square.png")
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    page.goto(page.url.split("?")[0] + "/crop-buckets")
    expect(page.get_by_label("3 images in 1216×832")).to_be_visible()
    url = page.url

    page.get_by_label("Buckets of", exact=True).select_option("kohya-sd15")
    expect(page.get_by_label("3 images in 640×384")).to_be_visible()
    expect(page.get_by_label("1 image in 512×512")).to_be_visible()
    expect(page.locator("#h-cb-buckets")).to_contain_text("SD 1.5")
    expect(page.get_by_label("3 images in 1216×832")).to_have_count(0)
    page.get_by_label("Buckets of", exact=True).select_option("ai-toolkit-512")
    expect(page.get_by_label("3 images in 576×384")).to_be_visible()
    assert page.url == url  # swapped in place, no reload
    # The crop itself still goes out with the trainer now chosen.
    expect(page.get_by_role("button", name="Crop 4 images")).to_be_in_viewport()
    assert faults == []
