"""A client from another ecosystem builds against the OpenAPI documents (docs/openapi.md):
`openapi-typescript` (from npm) generates TypeScript types from docs/openapi.yaml and
docs/openapi-ops.yaml, and `tsc --strict --noEmit` compiles a sample that uses them, including
a body the types must refuse.

The npm packages are installed into .state/npm (outside the tracked tree) on first use, at
the versions of PACKAGES. Without npm or its registry the test fails saying so: it never
skips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

NPM_DIR = REPO / ".state" / "npm"
PACKAGES = {"openapi-typescript": "7.13.0", "typescript": "5.9.3"}
INSTALL_TIMEOUT = 300

SAMPLE = """\
import type { components, paths } from "./public";
import type { components as ops, paths as opsPaths } from "./ops";

type Views = components["schemas"]["Views"];
export const one: Views = { userId: 42, postId: 17 };
export const many: Views = [{ userId: "42", postId: 17 }, { postId: 18 }];
// @ts-expect-error: postId is required
export const missing: Views = { userId: 42 };

type Accepted =
  paths["/v1/views"]["post"]["responses"][202]["content"]["application/json"];
export const accepted: Accepted = { accepted: 2, counted: 1, duplicates: 1 };

type ApiError = components["schemas"]["Error"];
export const problem: ApiError = { error: "postId: expected a positive 64-bit integer" };

type Post = components["schemas"]["Post"];
export function seen(post: Post): string {
  const tags = post.insights?.aggregatedTags ?? [];
  return `${post.postId}: ${post.views} views, ${post.media.length} media, ${tags.join(",")}`;
}

type NewPost =
  paths["/v1/posts"]["post"]["requestBody"]["content"]["application/json"];
export const created: NewPost = {
  postId: 17, userId: 42, media: [{ mediaId: 1, mediaUrl: "https://cdn.example.com/1.jpg" }],
};

type Replayed = ops["schemas"]["Replayed"];
export const replayed: Replayed = { stream: "ml-insights-results", replayed: 1,
  newIds: ["1700000000000-1"], more: false };
type Limit = NonNullable<
  opsPaths["/v1/admin/dlq/{stream}/replay"]["post"]["parameters"]["query"]>["limit"];
export const limit: Limit = 100;
"""


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def installed() -> bool:
    for name, version in PACKAGES.items():
        manifest = NPM_DIR / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def install() -> Path:
    """The npm packages in .state/npm; pytest.fail naming the cause when that cannot be."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: `make deps` (scripts/bootstrap.sh) installs it")
    if not installed():
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        manifest = {"private": True, "dependencies": PACKAGES}
        (NPM_DIR / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            done = run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       NPM_DIR, INSTALL_TIMEOUT)  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm install took over {INSTALL_TIMEOUT} s: is npm's registry reachable?")
        if done.returncode != 0 or not installed():
            pytest.fail(
                "npm install of openapi-typescript and typescript failed (is npm's registry "
                f"reachable?):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
    return NPM_DIR / "node_modules" / ".bin"


def test_typescript_types_generated_from_the_documents_compile(tmp_path: Path) -> None:
    bin_dir = install()
    for name, source in (("public", "openapi.yaml"), ("ops", "openapi-ops.yaml")):
        done = run([str(bin_dir / "openapi-typescript"), str(REPO / "docs" / source),
                    "-o", str(tmp_path / f"{name}.ts")], tmp_path, 120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        generated = (tmp_path / f"{name}.ts").read_text()
        assert "export interface paths" in generated and "export interface components" in generated
    (tmp_path / "sample.ts").write_text(SAMPLE)
    done = run([str(bin_dir / "tsc"), "--noEmit", "--strict", "--target", "es2020",
                "--module", "commonjs", "sample.ts"], tmp_path, 120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
