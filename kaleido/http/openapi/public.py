"""The public listener's paths: `/v1` views, posts and profile pictures, and the probes."""

from __future__ import annotations

from kaleido.http.bodies import MAX_VIEWS_PER_REQUEST
from kaleido.http.openapi.components import (
    ID,
    PATH_ID,
    TOO_MANY,
    USER_SECURITY,
    Schema,
    error,
    errors,
    json_body,
    ref,
)
from kaleido.media_urls import MAX_URL_CHARS
from kaleido.posts.model import MAX_MEDIA
from kaleido.profiles import MAX_DEPARTMENT_CHARS, MAX_USERNAME_CHARS

_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


_URL = {
    "type": "string",
    "maxLength": MAX_URL_CHARS,
    "pattern": "^https://",
    "description": (
        "A public https URL the ML service may fetch (no credentials, no private or loopback "
        "host; within KALEIDO_MEDIA_URL_PREFIXES when that is set)."
    ),
    "examples": ["https://cdn.example.com/p/1.jpg"],
}

SCHEMAS: Schema = {
    "Id": ID,
    "View": {
        "type": "object",
        "required": ["postId"],
        "properties": {
            "userId": {
                **ref("Id"),
                "description": "Required with the service token; a user token's own user "
                "when omitted (another user's: 403).",
            },
            "postId": ref("Id"),
        },
    },
    "Views": {
        "oneOf": [
            ref("View"),
            {
                "type": "array",
                "items": ref("View"),
                "minItems": 1,
                "maxItems": MAX_VIEWS_PER_REQUEST,
            },
        ]
    },
    "ViewsAccepted": {
        "type": "object",
        "required": ["accepted", "counted", "duplicates"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "counted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "refused": {
                "type": "integer",
                "minimum": 1,
                "description": "A user token's views of posts that do not exist, past its "
                "hourly budget (only when some were).",
            },
        },
    },
    "PostViews": {
        "type": "object",
        "required": ["postId", "views"],
        "properties": {
            "postId": {"type": "integer", "format": "int64"},
            "views": {"type": "integer", "minimum": 0},
            "degraded": {
                "type": "string",
                "description": "Present when Redis is unreachable: the total is PostgreSQL's.",
            },
        },
    },
    "MediaItem": {
        "type": "object",
        "required": ["mediaId", "mediaUrl"],
        "properties": {"mediaId": ref("Id"), "mediaUrl": _URL},
    },
    "MediaList": {
        "type": "array",
        "items": ref("MediaItem"),
        "maxItems": MAX_MEDIA,
        "description": "Unique media ids.",
    },
    "NewPost": {
        "type": "object",
        "required": ["postId", "userId", "media"],
        "properties": {"postId": ref("Id"), "userId": ref("Id"), "media": ref("MediaList")},
    },
    "MediaReplacement": {
        "type": "object",
        "required": ["media"],
        "properties": {"media": ref("MediaList")},
    },
    "PostStored": {
        "type": "object",
        "required": ["postId", "media", "announced"],
        "properties": {
            "postId": {"type": "integer", "format": "int64"},
            "media": {"type": "integer", "minimum": 0},
            "announced": {
                "type": "integer",
                "minimum": 0,
                "description": "Events committed for the ML service.",
            },
        },
    },
    "MediaReplaced": {
        "allOf": [
            ref("PostStored"),
            {
                "type": "object",
                "required": ["added", "removed"],
                "properties": {
                    "added": {"type": "integer", "minimum": 0},
                    "removed": {"type": "integer", "minimum": 0},
                },
            },
        ]
    },
    "ProfilePicture": {
        "type": "object",
        "required": ["imageUrl"],
        "properties": {
            "imageUrl": _URL,
            "username": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_USERNAME_CHARS,
            },
            "department": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_DEPARTMENT_CHARS,
            },
        },
    },
    "ProfilePictureAccepted": {
        "type": "object",
        "required": ["userId", "announced", "requestId"],
        "properties": {
            "userId": {"type": "integer", "format": "int64"},
            "announced": {"type": "integer"},
            "requestId": {"type": "string", "description": "The announcement's correlation id."},
        },
    },
    "MediaInsights": {
        "type": "object",
        "required": ["status", "servicesCompleted", "updatedAt"],
        "properties": {
            "status": {"type": "string"},
            "isSafe": _nullable("boolean"),
            "moderationConfidence": _nullable("number"),
            "caption": _nullable("string"),
            "tags": {"type": ["array", "null"], "items": {"type": "string"}},
            "scenes": {"type": ["array", "null"], "items": {"type": "string"}},
            "imageEmbeddingLength": _nullable("integer"),
            "servicesCompleted": _STRINGS,
            "correlationId": _nullable("string"),
            "updatedAt": _TIME,
        },
    },
    "Face": {
        "type": "object",
        "required": ["faceId", "status", "updatedAt"],
        "description": "The suggestion fields are null unless the caller is the post's owner, "
        "the suggested user, a moderator, an admin or a trusted caller.",
        "properties": {
            "faceId": {"type": "string"},
            "bbox": {"type": ["array", "null"], "items": {"type": "integer"}},
            "confidence": _nullable("number"),
            "status": {"type": "string"},
            "suggestedUserId": _nullable("integer"),
            "suggestionConfidence": _nullable("number"),
            "matchedUsername": _nullable("string"),
            "updatedAt": _TIME,
        },
    },
    "Media": {
        "type": "object",
        "required": ["mediaId", "mediaUrl", "position", "insights", "faces"],
        "properties": {
            "mediaId": {"type": "integer", "format": "int64"},
            "mediaUrl": {"type": "string"},
            "position": {"type": "integer"},
            "insights": {"oneOf": [ref("MediaInsights"), {"type": "null"}]},
            "faces": {"type": "array", "items": ref("Face")},
        },
    },
    "PostInsights": {
        "type": "object",
        "required": ["mediaCount", "isSafe", "updatedAt"],
        "properties": {
            "mediaCount": {"type": "integer"},
            "allAiTags": _STRINGS,
            "allAiScenes": _STRINGS,
            "aggregatedTags": _STRINGS,
            "aggregatedScenes": _STRINGS,
            "totalFaces": {"type": "integer"},
            "isSafe": {"type": "boolean"},
            "moderationConfidence": {"type": "number"},
            "inferredEventType": {"type": "string"},
            "combinedCaption": {"type": "string"},
            "hasMultipleImages": {"type": "boolean"},
            "correlationId": {"type": "string"},
            "aggregatedAt": _TIME_OR_NULL,
            "updatedAt": _TIME,
        },
    },
    "Post": {
        "type": "object",
        "required": [
            "postId",
            "userId",
            "status",
            "views",
            "createdAt",
            "updatedAt",
            "insights",
            "media",
        ],
        "properties": {
            "postId": {"type": "integer", "format": "int64"},
            "userId": {"type": "integer", "format": "int64"},
            "status": {"type": "string"},
            "views": {"type": "integer", "minimum": 0},
            "createdAt": _TIME,
            "updatedAt": _TIME,
            "insights": {"oneOf": [ref("PostInsights"), {"type": "null"}]},
            "media": {"type": "array", "items": ref("Media")},
        },
    },
}


def _id_param(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": PATH_ID,
    }


def _request(name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


PATHS: Schema = {
    "/v1/views": {
        "post": {
            "operationId": "recordViews",
            "summary": "Record views (202 once they are durable)",
            "description": "One view or a list of them. Repeats of a (user, post) pair count "
            "once (`duplicates`). A user token's views of posts that do not exist are held to "
            "an hourly budget: past it they are refused (`refused`), and a 429 when that is "
            "every view of the request.",
            "tags": ["views"],
            "security": USER_SECURITY,
            "requestBody": _request("Views"),
            "responses": {
                "202": json_body(ref("ViewsAccepted"), "The views are durable."),
                "429": TOO_MANY,
                **errors(body=True),
            },
        }
    },
    "/v1/posts/{postId}/views": {
        "get": {
            "operationId": "getPostViews",
            "summary": "A post's exact view total",
            "tags": ["views"],
            "security": USER_SECURITY,
            "parameters": [_id_param("postId", "The post.")],
            "responses": {
                "200": json_body(ref("PostViews"), "The total (0 for a post never viewed)."),
                **errors(),
            },
        }
    },
    "/v1/posts": {
        "post": {
            "operationId": "createPost",
            "summary": "Store a post and announce its media to the ML service",
            "tags": ["posts"],
            "security": USER_SECURITY,
            "requestBody": _request("NewPost"),
            "responses": {
                "201": json_body(ref("PostStored"), "Stored, and its announcements durable."),
                "409": error("The post exists, or a media id belongs to another post."),
                **errors(body=True),
            },
        }
    },
    "/v1/posts/{postId}": {
        "get": {
            "operationId": "getPost",
            "summary": "A post with its media, the ML service's insights and its views",
            "tags": ["posts"],
            "security": USER_SECURITY,
            "parameters": [_id_param("postId", "The post.")],
            "responses": {
                "200": json_body(ref("Post"), "The post."),
                **errors(path=True),
            },
        }
    },
    "/v1/posts/{postId}/media": {
        "put": {
            "operationId": "replacePostMedia",
            "summary": "Replace a post's media list (its owner or a moderator)",
            "tags": ["posts"],
            "security": USER_SECURITY,
            "parameters": [_id_param("postId", "The post.")],
            "requestBody": _request("MediaReplacement"),
            "responses": {
                "200": json_body(ref("MediaReplaced"), "Replaced; new media announced."),
                "409": error("A media id belongs to another post."),
                **errors(body=True, path=True),
            },
        }
    },
    "/v1/users/{userId}/profile-picture": {
        "post": {
            "operationId": "changeProfilePicture",
            "summary": "Record a user's new profile picture and announce it",
            "tags": ["profiles"],
            "security": USER_SECURITY,
            "parameters": [_id_param("userId", "The user (a user token: its own).")],
            "requestBody": _request("ProfilePicture"),
            "responses": {
                "202": json_body(ref("ProfilePictureAccepted"), "Recorded and announced."),
                **errors(body=True),
            },
        }
    },
}
