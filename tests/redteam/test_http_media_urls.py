"""Finding 2: media URL rules checked the raw Unicode host, so fullwidth digits, ideographic
full stops, circled digits and letters reached the ML service's fetcher, which resolves them
to 127.0.0.1 and 169.254.169.254. Hosts are now converted as resolvers convert them (IDNA,
UTS 46) before any rule runs."""

from __future__ import annotations

import pytest

from kaleido.app import Running

from .conftest import bearer, public, user_token

HOSTILE = [
    "https://１２７.０.０.１/a.jpg",
    "https://１６９.２５４.１６９.２５４/latest/meta-data/",
    "https://127。0。0.1/a.jpg",
    "https://127．0．0.1/a.jpg",
    "https://①②⑦.0.0.1/a.jpg",
    "https://sub.ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/a.jpg",
    "https://%31%32%37.0.0.1/a.jpg",
    "https://exa\u200dmple.com/a.jpg",  # does not convert (a joiner where none may be)
]


async def test_unicode_forms_of_internal_hosts_are_refused_as_post_media(
    secured: Running,
) -> None:
    """Each form, as a post's media, is a 400 naming the rule; nothing is stored."""
    async with public(secured) as http:
        for index, url in enumerate(HOSTILE):
            body = {"postId": 100 + index, "userId": 7,
                    "media": [{"mediaId": 200 + index, "mediaUrl": url}]}  # fmt: skip
            r = await http.post("/v1/posts", json=body, headers=bearer(user_token(7)))
            assert r.status_code == 400, (url, r.text)
            assert r.json()["error"].startswith("media[0].mediaUrl: "), r.text
            assert (await http.get(f"/v1/posts/{100 + index}",
                                   headers=bearer(user_token(7)))).status_code == 404  # fmt: skip


async def test_unicode_forms_of_internal_hosts_are_refused_as_profile_pictures(
    secured: Running,
) -> None:
    async with public(secured) as http:
        for url in HOSTILE:
            r = await http.post(
                "/v1/users/7/profile-picture", json={"imageUrl": url},
                headers=bearer(user_token(7)),
            )  # fmt: skip
            assert r.status_code == 400, (url, r.text)
            assert r.json()["error"].startswith("imageUrl: "), r.text


@pytest.mark.parametrize(
    ("url", "published"),
    [
        ("https://bücher.example/a.jpg", "https://xn--bcher-kva.example/a.jpg"),
        ("https://ＣＤＮ.example.com/a.jpg", "https://cdn.example.com/a.jpg"),
    ],
)
async def test_a_real_international_host_is_accepted_in_its_ascii_form(
    secured: Running, url: str, published: str
) -> None:
    """What is checked is what the ML service fetches: the ASCII form is stored."""
    async with public(secured) as http:
        body = {"postId": 300, "userId": 7, "media": [{"mediaId": 301, "mediaUrl": url}]}
        r = await http.post("/v1/posts", json=body, headers=bearer(user_token(7)))
        assert r.status_code in (200, 201, 202), r.text
        post = await http.get("/v1/posts/300", headers=bearer(user_token(7)))
        assert post.json()["media"][0]["mediaUrl"] == published
