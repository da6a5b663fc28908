"""The request's header checks (serving.limits), each on its own: Content-Type's kind or 415, then
Content-Length's 400 or 413, with the messages a client reads; the service asks them in that order."""
import pytest

pytest.importorskip('starlette', reason='needs requirements-serve.txt')

from solov2.serving.limits import HttpError, check_content_type, check_declared_length  # noqa: E402

TOO_LARGE = 'the body is 2.0 MB or more, over the limit of 1 MB: send a smaller file'


@pytest.mark.parametrize('content_type, kind', [(None, 'picture'), ('', 'picture'), ('image/jpeg', 'picture'),
                                                ('Image/PNG; q=1', 'picture'), ('application/octet-stream', 'picture'),
                                                ('multipart/form-data; boundary=b', 'multipart')])
def test_a_picture_or_form_type_gives_the_body_kind(content_type, kind):
    assert check_content_type(content_type) == kind


def test_another_type_is_415_naming_what_to_send():
    with pytest.raises(HttpError) as refused:
        check_content_type('application/json; charset=utf-8')
    assert refused.value.status == 415
    assert refused.value.message == ('Content-Type application/json is not a picture: send the file as the body '
                                     '(image/jpeg, image/png, ..., application/octet-stream) or as the field "file" '
                                     'of multipart/form-data')


@pytest.mark.parametrize('length, status, message', [
    (None, None, None), ('1048576', None, None), (' 12 ', None, None),
    ('12x', 400, "Content-Length '12x' is not a number of bytes"), ('-1', 400, "Content-Length '-1' is not a number "
                                                                              'of bytes'),
    (str(2 * 2**20), 413, TOO_LARGE)])
def test_a_declared_length_over_the_limit_is_413_and_one_that_is_no_number_400(length, status, message):
    if status is None:
        assert check_declared_length(length, 2**20) is None
        return
    with pytest.raises(HttpError) as refused:
        check_declared_length(length, 2**20)
    assert (refused.value.status, refused.value.message) == (status, message)
