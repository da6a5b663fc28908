"""The service's page at ``/`` in a real browser (headless Chromium and its driver from the system's
packages; .ci/run installs them): a picture uploaded is drawn with each mask in its class colour and
nothing outside the masks changed, the score slider hides instances without asking the service again,
hovering an instance says what it is, the downloads hold what is shown, a file that is not a picture
is said to be one; and the page's own headers, its absence with ``page=False`` and the OpenAPI
without it, without a browser."""
import base64
import json
import os
import shutil
import time

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

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
def browser(tmp_path):
    """Headless Chromium driven by its chromedriver, downloading into ``tmp_path / 'downloads'``."""
    webdriver = pytest.importorskip('selenium.webdriver', reason='needs selenium (requirements-test.txt)')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 '--force-device-scale-factor=1', '--window-size=1200,1600'):
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
        browser.find_element(By.ID, 'files').send_keys(str(path))
        wait_for(lambda: 'instances found' in browser.find_element(By.CSS_SELECTOR, '.card .status').text)
        asked = segment_requests(client)
        check_drawn(canvas_rgb(browser), picture, masks, colours, scores >= 0.3)
        assert len(browser.find_elements(By.CSS_SELECTOR, '.card .instances button')) == (scores >= 0.3).sum()

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
        coco = downloaded(folder, 'shapes.coco.json')
        assert sorted(r['score'] for r in coco) == pytest.approx(sorted(scores[scores >= cut]), abs=1e-6)

        text = tmp_path / 'notes.txt'
        text.write_text('not a picture')
        browser.find_element(By.ID, 'files').send_keys(str(text))
        error = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '.card .error').text)
        assert error.startswith('This file is not a picture the service can read'), error


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
