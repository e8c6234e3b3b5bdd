import cv2

from ecg_app.serving.quality import assess


def codes(image) -> set[str]:
    return {w.code for w in assess(image)}


def test_a_clean_full_page_has_no_warnings(printout):
    assert codes(printout) == set()


def test_blur_is_flagged(printout):
    assert "blurry" in codes(cv2.GaussianBlur(printout, (0, 0), 4))


def test_small_image_is_flagged(printout):
    assert "low_resolution" in codes(cv2.resize(printout, (400, 284), interpolation=cv2.INTER_AREA))


def test_cropped_or_portrait_framing_is_flagged(printout):
    assert "unusual_framing" in codes(printout[:, : printout.shape[1] // 2])
    assert "unusual_framing" in codes(cv2.rotate(printout, cv2.ROTATE_90_CLOCKWISE))


def test_messages_are_sentences(printout):
    for warning in assess(cv2.GaussianBlur(printout[:, :500], (0, 0), 4)):
        assert warning.message.endswith(".") and len(warning.message) > 30


def test_a_photographed_page_that_was_straightened_is_said_so(printout):
    from ecg_app.training.robustness import DEGRADATIONS

    assert "page_straightened" in codes(DEGRADATIONS["photographed on a desk"](printout))
    assert "page_straightened" not in codes(printout)
