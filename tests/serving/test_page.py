"""The service's page at ``/`` in a real browser (headless Chromium and its driver from the system's
packages; .ci/run installs them): a picture uploaded is drawn with each mask in its class colour and
nothing outside the masks changed, enlarged to a size a pointer can use, its captions where demo.py would
put them, as tall on the screen on a small picture as on a large one; the score slider hides instances
without asking the service again, hovering an instance says what it is, the downloads hold what is shown
(COCO results every instance), a file that is not a picture, too large a file or too large a picture is
said so in plain words; each card shows only what its state means (segmenting, answered, refused),
pictures chosen together keep their order; and the page's own headers, its absence with ``page=False``
and the OpenAPI without it, without a browser."""
import base64
import json
import os
import shutil
import time

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from solov2.data.visualize import CLASS_PALETTE, MaskShares, class_color, largest_region_box, place_captions
from tests.helpers import REPO_DIR
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')
ALPHA = 0.5             # the page's fill over the picture (page.js)
NEEDS_BROWSER = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'),
    reason='needs chromium and chromium-driver (apt install chromium chromium-driver; .ci/run installs them)')


def segment_requests(client) -> float:
    """How many requests /v1/segment has answered (its /metrics)."""
    family = metric_families(client)['solov2_requests']
    return sum(s.value for s in family.samples if s.name.endswith('_total') and s.labels['route'] == '/v1/segment')


@pytest.fixture()
def browser(tmp_path, request):
    """Headless Chromium driven by its chromedriver, downloading into ``tmp_path / 'downloads'``; its device
    pixel ratio 1, or the test's indirect parameter."""
    webdriver = pytest.importorskip('selenium.webdriver', reason='needs selenium (requirements-test.txt)')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 f'--force-device-scale-factor={getattr(request, "param", 1)}', '--window-size=1200,1600'):
        options.add_argument(flag)
    (tmp_path / 'downloads').mkdir()
    options.add_experimental_option('prefs', {'download.default_directory': str(tmp_path / 'downloads'),
                                              'download.prompt_for_download': False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    driver.execute_cdp_cmd('Browser.setDownloadBehavior', {'behavior': 'allow',
                                                            'downloadPath': str(tmp_path / 'downloads')})
    yield driver
    driver.quit()


def wait_for(check, timeout_s: float = 30.0):
    """``check()``'s first true value, polled; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail(f'{check} never held within {timeout_s} s')


def canvas_rgb(driver) -> np.ndarray:
    """[H, W, 3] uint8 RGB of the first answer's picture canvas, as the browser drew it."""
    url = driver.execute_script("return document.querySelector('.card .view').toDataURL('image/png')")
    png = np.frombuffer(base64.b64decode(url.split(',', 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def masks_of(answer: dict) -> np.ndarray:
    """[N, H, W] bool of the answer's instances."""
    return np.stack([mask_util.decode(one['mask']).astype(bool) for one in answer['instances']])


def check_drawn(drawn, picture, masks, colours, shown) -> None:
    """Pixels inside exactly one shown mask carry its colour over the picture; outside every shown mask none."""
    inside = masks[shown].sum(0)
    assert np.abs(drawn[inside == 0].astype(int) - picture[inside == 0]).max() <= 1
    for index in np.flatnonzero(shown):
        alone = masks[index] & (inside == 1)
        want = picture[alone] * (1 - ALPHA) + np.array(colours[index]) * ALPHA
        assert alone.any() and np.abs(drawn[alone] - want).max() <= 3, index


PARTS = ('status', 'error', 'stage', 'info', 'instances', 'downloads')     # what a card may display
ANSWERED = dict.fromkeys(PARTS, True) | {'error': False}
SEGMENTING = dict.fromkeys(PARTS, False) | {'status': True}
REFUSED = dict.fromkeys(PARTS, False) | {'error': True}     # the reason alone: no blank line under it


def shown_parts(driver, card: int = 0) -> dict:
    """{part of the card: whether it is displayed} for the card's status, error, picture, pointer's description,
    instance list and downloads."""
    from selenium.webdriver.common.by import By
    node = driver.find_elements(By.CSS_SELECTOR, '.card')[card]
    return {part: node.find_element(By.CSS_SELECTOR, f'.{part}').is_displayed() for part in PARTS}


def demo_captions(masks, shown, sizes, image_hw):
    """The caption rects data/visualize.py places for the ``shown`` masks (best first) with the page's sizes."""
    shares, anchors = MaskShares(image_hw), []
    for index in np.flatnonzero(shown):
        ys, xs = np.nonzero(masks[index])
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        anchors.append(largest_region_box(masks[index][box[1]:box[3], box[0]:box[2]], box))
    for index in np.flatnonzero(shown)[::-1]:                 # drawn worst first, as draw_instances adds them
        ys, xs = np.nonzero(masks[index])
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        shares.add_mask(masks[index][box[1]:box[3], box[0]:box[2]], box)
    return [list(rect) for rect in place_captions(sizes, anchors, shares)]


def downloaded(folder, name: str):
    """The JSON of the file ``name`` once the browser has written it."""
    path = folder / name
    wait_for(lambda: path.is_file() and not list(folder.glob('*.crdownload')) and path.stat().st_size > 0)
    return json.loads(path.read_text())


@NEEDS_BROWSER
def test_the_page_draws_filters_describes_downloads_and_says_what_is_wrong(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    picture = cv2.cvtColor(cv2.imread(str(REPO_DIR / 'images' / 'shapes_000023.jpg')), cv2.COLOR_BGR2RGB)
    path = tmp_path / 'shapes.png'
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))     # lossless: the pixels the page draws
    with serving(ServeSettings(SMALL_MODEL)) as client:
        answer = client.post('/v1/segment?min_score=0', content=path.read_bytes()).json()
        masks, scores = masks_of(answer), np.array([one['score'] for one in answer['instances']])
        browser.get(str(client.base_url) + '/')
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#classes input'))
        swatches = browser.find_elements(By.CSS_SELECTOR, '#classes .swatch')
        palette = [tuple(int(v) for v in s.get_attribute('data-colour').split(',')) for s in swatches]
        colours = [palette[one['label']] for one in answer['instances']]
        assert browser.execute_script('return PALETTE') == [list(c) for c in CLASS_PALETTE]   # demo's and browse's
        assert palette == [class_color(label) for label in range(len(palette))]
        browser.find_element(By.ID, 'files').send_keys(str(path))
        wait_for(lambda: 'instances found' in browser.find_element(By.CSS_SELECTOR, '.card .status').text)
        asked = segment_requests(client)
        check_drawn(canvas_rgb(browser), picture, masks, colours, scores >= 0.3)
        assert len(browser.find_elements(By.CSS_SELECTOR, '.card .instances button')) == (scores >= 0.3).sum()
        assert shown_parts(browser) == ANSWERED
        assert picture.shape[1] == 256 and browser.find_element(By.CSS_SELECTOR, '.card .view').size['width'] >= 640
        captions = browser.execute_script('return state.cards[0].captions')
        assert len(captions) == (scores >= 0.3).sum() >= 3
        sizes = [(rect[2] - rect[0], rect[3] - rect[1]) for rect in (one['rect'] for one in captions)]
        assert [one['rect'] for one in captions] == demo_captions(masks, scores >= 0.3, sizes, picture.shape[:2])
        rects = [one['rect'] for one in captions]
        assert not [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]
                    if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]    # apart

        cut = float(np.sort(scores[scores >= 0.3])[0]) + 1e-3        # hides the lowest one shown
        slider = browser.find_element(By.ID, 'min-score')
        browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                               slider, f'{cut:.3f}')
        check_drawn(canvas_rgb(browser), picture, masks, colours, scores >= cut)
        assert segment_requests(client) == asked                     # filtered here, not asked again

        best = int(np.argmax(scores))
        ys, xs = np.nonzero(masks[best])             # the best one shown there: the one a pointer names
        x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
        marks = browser.find_element(By.CSS_SELECTOR, '.card .marks')
        scale = marks.size['width'] / picture.shape[1]
        ActionChains(browser).move_to_element_with_offset(marks, int((x + 0.5) * scale - marks.size['width'] / 2),
                                                          int((y + 0.5) * scale - marks.size['height'] / 2)).perform()
        one = answer['instances'][best]
        said = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '.card .info').text)
        assert said == (f"{one['name']}: score {one['score']:.3f}, box [{', '.join(map(str, one['box']))}], "
                        f'area {int(masks[best].sum())} px')

        folder = tmp_path / 'downloads'
        browser.find_element(By.CSS_SELECTOR, '[data-download="json"]').click()
        got = downloaded(folder, 'shapes.answer.json')
        assert got['instances'] == [one for one, score in zip(answer['instances'], scores) if score >= cut]
        browser.find_element(By.CSS_SELECTOR, '[data-download="labelme"]').click()
        labelme = downloaded(folder, 'shapes.json')
        assert labelme['imagePath'] == 'shapes.png' and labelme['imageHeight'] == picture.shape[0]
        shown = sorted({f"{one['name']} score {one['score']:.3f}" for one in answer['instances']
                        if one['score'] >= cut})
        assert sorted({f"{s['label']} {s['description']}" for s in labelme['shapes']}) == shown
        browser.find_element(By.CSS_SELECTOR, '[data-download="coco"]').click()
        coco = downloaded(folder, 'shapes.coco.json')           # every instance: scoring needs them all
        assert sorted(r['score'] for r in coco) == pytest.approx(sorted(scores), abs=1e-6)

        text = tmp_path / 'notes.txt'
        text.write_text('not a picture')
        browser.find_element(By.ID, 'files').send_keys(str(text))
        error = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '.card .error').text)
        assert error == 'This file is not a picture the service can read. Send a JPEG, PNG, BMP, WebP or TIFF picture.'
        assert shown_parts(browser) == REFUSED


def caption_heights(driver) -> tuple:
    """[(height, its text's height)] in the marks canvas's own pixels of the first card's captions (their
    rgba(0, 0, 0, 0.65) backgrounds with the white text in them, a box's line crossing one bridged), and that
    canvas's pixels per CSS pixel across and down, with the device pixel ratio."""
    url = driver.execute_script("return document.querySelector('.card .marks').toDataURL('image/png')")
    rgba = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(',', 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    neutral = rgba[..., :3].max(-1).astype(int) - rgba[..., :3].min(-1) <= 3
    background = neutral & (np.abs(rgba[..., 3].astype(int) - 166) <= 3) & (rgba[..., :3].max(-1) <= 2)
    text = neutral & (rgba[..., 3] >= 166) & (rgba[..., :3].min(-1) >= 200)
    caption = cv2.morphologyEx((background | text).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 1), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(caption, connectivity=4)
    heights = []
    for x, y, w, h, _ in stats[1:]:
        rows = np.flatnonzero(text[y:y + h, x:x + w].any(1))
        if w >= 20 and rows.size:
            heights.append((int(h), int(rows[-1] - rows[0] + 1)))
    shown = driver.execute_script("const m = document.querySelector('.card .marks'); "
                                  'return [m.width / m.clientWidth, m.height / m.clientHeight, devicePixelRatio]')
    return heights, shown


@NEEDS_BROWSER
@pytest.mark.parametrize('browser', [2], indirect=True)
def test_captions_are_as_tall_on_screen_on_a_small_picture_as_on_a_large_one(browser, tmp_path):
    """The marks (boxes, captions) are drawn in screen pixels at a device pixel ratio of 2: on a 100x80 picture
    shown enlarged 6.4 times and on a 1600x1280 one shown shrunk, the marks canvas has two pixels to a CSS pixel
    and each caption is 17 CSS pixels tall with its text at least 9 (before: the canvas had the picture's
    pixels, a caption 3 of them on the small picture, its text 2)."""
    from selenium.webdriver.common.by import By
    source = cv2.imread(str(REPO_DIR / 'images' / 'shapes_000023.jpg'))
    measured = {}
    with serving(ServeSettings(SMALL_MODEL)) as client:
        for size in ((100, 80), (1600, 1280)):
            path = tmp_path / f'shapes_{size[0]}.png'
            cv2.imwrite(str(path), cv2.resize(source, size, interpolation=cv2.INTER_AREA if size[0] < 256 else
                                              cv2.INTER_CUBIC))
            browser.get(str(client.base_url) + '/')
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#classes input'))
            browser.find_element(By.ID, 'files').send_keys(str(path))
            wait_for(lambda: 'instances found' in browser.find_element(By.CSS_SELECTOR, '.card .status').text)
            measured[size] = caption_heights(browser)
    for size, (heights, shown) in measured.items():
        assert shown == pytest.approx([2, 2, 2], abs=0.02), size
        assert len(heights) >= 3 and sorted(heights)[len(heights) // 2][0] == 34, (size, heights)
        assert min(text for _, text in heights) >= 18, (size, heights)


@NEEDS_BROWSER
def test_cards_show_what_their_state_means_in_the_order_chosen_and_refusals_in_plain_words(browser, tmp_path):
    """Two pictures chosen together: both 'Segmenting…' with nothing else shown while the service has not
    answered, in the order chosen, and so once answered; too large a file or too large a picture: one plain
    sentence with the figures, no picture and no downloads."""
    from selenium.webdriver.common.by import By
    first, second = tmp_path / 'b_first.png', tmp_path / 'a_second.png'
    for path, name in ((first, 'shapes_000042.jpg'), (second, 'shapes_000023.jpg')):
        cv2.imwrite(str(path), cv2.imread(str(REPO_DIR / 'images' / name)))
    big, heavy = tmp_path / 'big.png', tmp_path / 'heavy.png'
    cv2.imwrite(str(big), np.zeros((400, 400, 3), np.uint8))
    heavy.write_bytes(big.read_bytes() + bytes(700_000))
    with serving(ServeSettings(SMALL_MODEL, max_pixels=100_000, max_body_mb=0.5)) as client:
        browser.get(str(client.base_url) + '/')
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#classes input'))
        browser.execute_script("""
            const real = window.fetch; window.held = [];
            window.fetch = (url, options) => String(url).includes('/v1/segment')
                ? new Promise((done) => window.held.push(() => done(real(url, options)))) : real(url, options);""")
        browser.find_element(By.ID, 'files').send_keys(f'{first}\n{second}')
        wait_for(lambda: browser.execute_script('return window.held.length') == 2)
        names = lambda: [node.text for node in browser.find_elements(By.CSS_SELECTOR, '.card .name')]   # noqa: E731
        assert names() == ['b_first.png', 'a_second.png']
        for card in (0, 1):
            assert shown_parts(browser, card) == SEGMENTING
            assert browser.find_elements(By.CSS_SELECTOR, '.card .status')[card].text == 'Segmenting…'
        browser.execute_script('window.held.forEach((go) => go()); window.held = [];')
        wait_for(lambda: all('instances found' in node.text for node in
                             browser.find_elements(By.CSS_SELECTOR, '.card .status')))
        assert names() == ['b_first.png', 'a_second.png']
        assert [shown_parts(browser, card)['stage'] for card in (0, 1)] == [True, True]
        browser.refresh()                                  # the page's own fetch again
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#classes input'))
        for path, said in ((big, 'This picture is too large: 400 x 400 pixels, and the service takes pictures up '
                                 'to 0.1 megapixels. Shrink it and send it again.'),
                           (heavy, 'This file is too large: 0.7 MB, and the service takes pictures up to 0.5 MB. '
                                   'Send a smaller file.')):
            browser.find_element(By.ID, 'files').send_keys(str(path))
            error = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '.card .error').text)
            assert error == said
            assert shown_parts(browser) == REFUSED


def test_the_page_is_sent_with_its_policy_offline_and_off_with_no_page():
    """The page and its two files: a content security policy that allows nothing from elsewhere,
    ``nosniff``, no external address in them; not in the OpenAPI; ``page=False``: 404."""
    with serving(ServeSettings(SMALL_MODEL)) as client:
        for path, kind in (('/', 'text/html'), ('/page/page.js', 'text/javascript'), ('/page/page.css', 'text/css')):
            answer = client.get(path)
            assert answer.status_code == 200 and answer.headers['content-type'].startswith(kind), path
            assert answer.headers['x-content-type-options'] == 'nosniff'
            assert "default-src 'none'" in answer.headers['content-security-policy']
            assert 'http://' not in answer.text and 'https://' not in answer.text and '@import' not in answer.text
        assert client.get('/page/other.js').status_code == 404
        assert not [path for path in client.get('/openapi.json').json()['paths'] if not path.startswith('/v1/')
                    and path not in ('/healthz', '/readyz', '/metrics')]
    with serving(ServeSettings(SMALL_MODEL, page=False)) as client:
        assert client.get('/').status_code == 404 and client.get('/page/page.js').status_code == 404
