"""HTTP JSON bodies on the converter (kaleido.http.bodies): what each body may be, the 400 that
names the first bad field, and the camelCase answers. Pure: no server, no backend."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleido.http.auth import OPEN, Caller
from kaleido.http.bodies import (
    MAX_REPLAY_IDS,
    MAX_VIEWS_PER_REQUEST,
    MediaList,
    PictureChange,
    View,
    render,
    structure_body,
)
from kaleido.http.errors import BadRequest
from kaleido.http.posts import parse_media, parse_new_post, post_json
from kaleido.http.streams_admin import parse_replay_ids
from kaleido.http.views import parse_views
from kaleido.messages.converter import converter, failures, path_text
from kaleido.posts import (
    Face,
    Insights,
    MediaItem,
    MediaRecord,
    NewPost,
    PostInsights,
    PostRecord,
)

URL = "https://img.example.com/a.jpg"


def item(media_id: object = 1, url: object = URL) -> dict[str, object]:
    return {"mediaId": media_id, "mediaUrl": url}


def refusal(parse: Any, *args: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        parse(*args)
    assert caught.value.status == 400
    return str(caught.value)


# --------------------------------------------------------------------------- posts


def test_a_post_body_is_structured_from_camel_case() -> None:
    body = {"postId": "7", "userId": 3, "media": [item(1), item(2, URL + "?b")], "extra": 1}
    assert parse_new_post(body) == NewPost(7, 3, (MediaItem(1, URL), MediaItem(2, URL + "?b")))


def test_a_host_is_given_back_in_ascii() -> None:
    post = parse_new_post({"postId": 1, "userId": 1, "media": [item(1, "https://bücher.de/x")]})
    assert post.media[0].media_url == "https://xn--bcher-kva.de/x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected an object with postId, userId and media"),
        ("x", "body: expected an object with postId, userId and media"),
        ({"userId": 1, "media": []}, "postId: expected a positive 64-bit integer, got None"),
        ({"postId": None, "userId": 1, "media": []}, "postId: expected a positive 64-bit"),
        ({"postId": 1, "userId": True, "media": []}, "userId: expected a positive 64-bit"),
        ({"postId": 1, "userId": 2**63, "media": []}, "userId: expected a positive 64-bit"),
        ({"postId": 1, "userId": 1}, "media: expected a list of {mediaId, mediaUrl} objects"),
        ({"postId": 1, "userId": 1, "media": {}}, "media: expected a list"),
        ({"postId": 1, "userId": 1, "media": [7]},
         "media[0]: expected an object with mediaId and mediaUrl"),
        ({"postId": 1, "userId": 1, "media": [item(1), {"mediaId": 2}]},
         "media[1].mediaUrl: expected an https URL, got None"),
        ({"postId": 1, "userId": 1, "media": [item(1), item(-2)]},
         "media[1].mediaId: expected a positive 64-bit integer, got -2"),
        ({"postId": 1, "userId": 1, "media": [item(1, "http://a.b/c")]},
         "media[0].mediaUrl: expected an https URL"),
        ({"postId": 1, "userId": 1, "media": [item(1, "https://127.0.0.1/x")]},
         "media[0].mediaUrl: an IP address as host is not accepted"),
        ({"postId": 1, "userId": 1, "media": [item(5), item(6), item(5)]},
         "media[2].mediaId: 5 repeats media[0]"),
        ({"postId": 1, "userId": 1, "media": [item(i) for i in range(1, 52)]},
         "media: 51 items, limit 50"),
    ],
)  # fmt: skip
def test_a_bad_post_body_is_a_400_naming_the_field(body: object, message: str) -> None:
    assert refusal(parse_new_post, body).startswith(message)


def test_the_first_bad_field_is_named_in_field_order() -> None:
    body = {"postId": "x", "userId": "y", "media": "z"}
    assert refusal(parse_new_post, body).startswith("postId: ")


def test_url_prefixes_are_checked_after_the_body() -> None:
    prefixes = ("https://cdn.example.com/",)
    assert parse_media({"media": [item(1, "https://cdn.example.com/a")]}, prefixes)
    message = refusal(parse_media, {"media": [item(1)]}, prefixes)
    assert message == "media[0].mediaUrl: must start with one of https://cdn.example.com/"


def test_a_media_list_body() -> None:
    assert structure_body({"media": [item()]}, MediaList) == MediaList((MediaItem(1, URL),))
    assert refusal(parse_media, []) == "body: expected an object with media"


def test_a_profile_picture_body_passes_the_labels_on_unchecked() -> None:
    body = structure_body({"imageUrl": URL, "username": 7}, PictureChange)
    assert body == PictureChange(URL, 7, None)
    assert refusal(structure_body, {"username": "a"}, PictureChange).startswith(
        "imageUrl: expected an https URL, got None"
    )


# --------------------------------------------------------------------------- views


def test_views_one_or_many() -> None:
    assert parse_views({"userId": 1, "postId": "2"}) == [(1, 2)]
    assert parse_views([{"userId": 1, "postId": 2}, {"userId": 3, "postId": 4}]) == [
        (1, 2),
        (3, 4),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected a view or a non-empty list of views"),
        ("hello", "body: expected an object with userId and postId"),
        ({"userId": 1}, "body.postId: expected a positive 64-bit integer, got None"),
        ({"userId": 1.5, "postId": 1}, "body.userId: expected a positive 64-bit integer"),
        ([{"userId": 1, "postId": 2}, 7], "body[1]: expected an object with userId and postId"),
        ([{"userId": 1, "postId": 2}, {"userId": "x", "postId": 2}],
         "body[1].userId: expected a positive 64-bit integer, got 'x'"),
        ([{"userId": 1, "postId": 1}] * (MAX_VIEWS_PER_REQUEST + 1),
         f"body: {MAX_VIEWS_PER_REQUEST + 1} views, limit"),
    ],
)  # fmt: skip
def test_a_bad_view_body_is_a_400_naming_the_field(body: object, message: str) -> None:
    assert refusal(parse_views, body).startswith(message)


def test_a_user_tokens_views_are_its_own() -> None:
    user = Caller("user", user_id=9)
    assert parse_views({"postId": 2}, user) == [(9, 2)]
    assert parse_views([{"postId": 2}, {"userId": 9, "postId": 3}], user) == [(9, 2), (9, 3)]
    with pytest.raises(BadRequest) as caught:
        parse_views([{"postId": 2}, {"userId": 8, "postId": 3}], user)
    assert caught.value.status == 403
    assert str(caught.value) == "body[1].userId: 8 is not the token's user (9)"


# --------------------------------------------------------------------------- replay ids


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], 'body: expected {"ids": ["<dlq entry id>", ...]} or no body'),
        ({"ids": "1-0"}, "ids: expected a list of stream entry ids"),
        ({"ids": ["1-0", "x"]}, "ids[1]: expected a stream entry id like '1700000000000-0'"),
        ({"ids": [7]}, "ids[0]: expected a stream entry id"),
        ({"ids": ["1-0\n"]}, "ids[0]: expected a stream entry id"),
        ({"ids": ["1-0"] * (MAX_REPLAY_IDS + 1)}, f"ids: {MAX_REPLAY_IDS + 1} ids, limit"),
    ],
)
def test_bad_replay_ids_are_a_400_naming_the_item(body: object, message: str) -> None:
    assert refusal(parse_replay_ids, body).startswith(message)


def test_replay_ids() -> None:
    assert parse_replay_ids({"ids": ["1700000000000-0", "1-2"]}) == ["1700000000000-0", "1-2"]


# --------------------------------------------------------------------------- any JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
keyed = st.fixed_dictionaries(
    {},
    optional={
        "postId": json_values,
        "userId": json_values,
        "media": st.lists(
            st.fixed_dictionaries({}, optional={"mediaId": json_values, "mediaUrl": json_values})
            | json_values,
            max_size=3,
        )
        | json_values,
        "ids": st.lists(st.text(max_size=8) | json_values, max_size=3) | json_values,
    },
)


@settings(max_examples=300)
@given(st.sampled_from([parse_new_post, parse_media, parse_views, parse_replay_ids]),
       keyed | json_values | st.lists(keyed, max_size=3))  # fmt: skip
def test_any_json_is_a_value_or_a_400(parse: Any, body: object) -> None:
    with contextlib.suppress(BadRequest):
        parse(body)


def test_failures_give_wire_paths() -> None:
    with pytest.raises(Exception) as caught:
        converter.structure([{"userId": 1, "postId": 1}, {"postId": 0}], list[View])
    found = [(path_text(path, "body"), str(exc)) for path, exc in failures(caught.value)]
    assert found == [
        ("body[1].userId", "expected a positive 64-bit integer, got None"),
        ("body[1].postId", "expected a positive 64-bit integer, got 0"),
    ]


# --------------------------------------------------------------------------- answers

NOW = datetime(2026, 5, 4, 10, 15, 30, 123456, tzinfo=UTC)
STAMP = "2026-05-04T10:15:30.123456Z"


def _post() -> PostRecord:
    insights = Insights("complete", True, 0.9, "a cat", ("cat",), None, 1408, ("moderation",),
                        "c-1", NOW)  # fmt: skip
    face = Face("f-1", (1, 2, 3, 4), 0.97, "suggested", 7, 0.8, "ann", NOW)
    aggregate = PostInsights(1, ("cat",), (), ("cat",), (), 1, True, 0.9, "general", "a cat",
                             False, "c-2", None, NOW)  # fmt: skip
    media = (MediaRecord(3, URL, 0, insights, (face,)), MediaRecord(4, URL, 1, None, ()))
    return PostRecord(1, 2, "ready", NOW, NOW, media, aggregate)


def test_an_insights_record_renders_camel_case() -> None:
    assert render(_post().media[0].insights) == {
        "status": "complete",
        "isSafe": True,
        "moderationConfidence": 0.9,
        "caption": "a cat",
        "tags": ["cat"],
        "scenes": None,
        "imageEmbeddingLength": 1408,
        "servicesCompleted": ["moderation"],
        "correlationId": "c-1",
        "updatedAt": STAMP,
    }


def test_a_post_answer() -> None:
    answer = json.loads(json.dumps(post_json(_post(), 5, OPEN)))
    assert answer["postId"] == 1 and answer["userId"] == 2 and answer["views"] == 5
    assert answer["createdAt"] == STAMP
    assert answer["insights"]["aggregatedAt"] is None
    assert answer["insights"]["inferredEventType"] == "general"
    first, second = answer["media"]
    assert first["mediaUrl"] == URL and first["insights"]["tags"] == ["cat"]
    assert first["faces"][0] == {
        "faceId": "f-1",
        "bbox": [1, 2, 3, 4],
        "confidence": 0.97,
        "status": "suggested",
        "suggestedUserId": 7,
        "suggestionConfidence": 0.8,
        "matchedUsername": "ann",
        "updatedAt": STAMP,
    }
    assert second == {"mediaId": 4, "mediaUrl": URL, "position": 1, "insights": None,
                      "faces": []}  # fmt: skip


def test_a_stranger_does_not_see_whom_a_face_was_matched_to() -> None:
    stranger = Caller("user", user_id=99)
    face = post_json(_post(), 0, stranger)["media"][0]["faces"][0]
    assert face["suggestedUserId"] is None and face["matchedUsername"] is None
    assert face["suggestionConfidence"] is None and face["status"] == "suggested"
    assert (
        post_json(_post(), 0, Caller("user", user_id=7))["media"][0]["faces"][0]["matchedUsername"]
        == "ann"
    )
