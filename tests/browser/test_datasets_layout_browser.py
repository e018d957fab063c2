"""At 1280×800 each datasets page shows its main action without scrolling, and radio buttons and
checkboxes beside labels that wrap keep their size (a flex row used to shrink them)."""
from PIL import Image
from playwright.sync_api import expect


def test_main_actions_show_at_1280_by_800_and_boxes_keep_their_size(logged_in, live_server, live_user):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "first set"
    folder.mkdir(parents=True)
    for n in range(6):
        Image.new("RGB", (900, 600), (n * 40, 90, 90)).save(folder / f"photo {n}.png")
        if n:  # one without a caption: Export lists what Health knows of
            (folder / f"photo {n}.txt").write_text("\r\nmychar, 1girl\r\n" if n == 1 else "mychar, smile")
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    grid = page.url.split("?")[0]

    page.goto(grid + "/export")
    expect(page.locator(".notice.warn")).to_contain_text("Health knows of")
    expect(page.get_by_role("button", name="Export")).to_be_in_viewport(ratio=1)
    sizes = {(round(b["width"]), round(b["height"])) for b in
             (page.locator(sel).bounding_box() for sel in ("#x-training", "#x-kohya", "#x-metadata", "#x-seq", "#x-flatten"))}
    assert len(sizes) == 1, sizes  # every box the same size, however long its label

    page.goto(grid + "/crop-buckets")
    expect(page.get_by_role("button", name="Crop 6 images")).to_be_in_viewport(ratio=1)
    radios = {round(page.locator(sel).bounding_box()["width"]) for sel in ("#cb-beside", "#cb-folder")}
    assert len(radios) == 1, radios

    page.goto(grid)
    page.locator(".ds-cell a.ds-thumb").first.click()
    expect(page.get_by_role("button", name="Move to trash")).to_be_in_viewport(ratio=1)
    expect(page.get_by_label("Add a tag")).to_be_in_viewport(ratio=1)
    assert faults == []
