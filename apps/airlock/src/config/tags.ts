/**
 * Tag selection for `images.yaml`: which of a repository's tags an image entry means.
 *
 * A selector is either a list of tags or a filter. A filter is applied in this fixed order:
 *
 *   1. `include` — keep the tags that match at least one of these regular expressions (all tags
 *      when `include` is absent);
 *   2. `exclude` — drop the tags that match any of these;
 *   3. `semver`  — keep the tags that are semantic versions (an optional leading `v`, then
 *      MAJOR.MINOR.PATCH with an optional -PRERELEASE) inside this range; every other tag is
 *      dropped. Tags are NOT coerced: `1.2` or `3.19` is not a version and never matches (write
 *      the tags you want in `include`, or a list, for such repositories). Pre-releases match only
 *      when the range itself names a pre-release of the same MAJOR.MINOR.PATCH (node-semver's rule);
 *   4. `newest: N` — keep the N highest versions: by semantic versioning when `semver` is given or
 *      every remaining tag is a semantic version; otherwise tags that start with a number (`1.2`,
 *      `v3.19.1-alpine`, `20240101`) rank by their leading numbers, compared one by one (a release
 *      above the same numbers with a suffix), above tags that are not versions at all (`latest`,
 *      `edge`), which rank among themselves in lexical order. Never the registry's listing order:
 *      registries list tags in no reliable order (distribution 2.8 does not sort them).
 *
 * Regular expressions are JavaScript's, unanchored like skopeo's `images-by-tag-regex`: `-rc`
 * matches any tag containing "-rc"; write `^…$` to match whole tags.
 *
 * The result keeps the order of the input, without duplicates; selection never reorders.
 */
import type { SemVer } from "semver";
import semver from "semver";

/** A filter over a repository's tags; see this module's comment for the order of the steps. */
export interface TagFilter {
  /** Keep tags matching at least one of these (unanchored JavaScript regular expressions). */
  include?: readonly string[];
  /** Drop tags matching any of these. */
  exclude?: readonly string[];
  /** Keep tags that are semantic versions within this node-semver range (e.g. `>=1.2.0 <2`). */
  semver?: string;
  /** Keep only this many tags: the highest versions, or the last ones listed. */
  newest?: number;
}

/** A tag selector: an explicit list of tags or a {@link TagFilter}. */
export type TagSelector = readonly string[] | TagFilter;

/**
 * The semantic version a tag stands for, or undefined when it is not one. `v1.2.3` and `1.2.3`
 * are versions; `1.2`, `latest` and `1.2.3.4` are not (no coercion).
 */
export function tagVersion(tag: string): SemVer | undefined {
  return semver.parse(tag, { loose: false }) ?? undefined;
}

/**
 * Returns the tags of `allTags` that `selector` selects, in the order of `allTags`, without
 * duplicates. With a list, the listed tags that exist; with a filter, the steps in this module's
 * order. Throws SyntaxError for an invalid regular expression or TypeError for an invalid semver
 * range (images.yaml is checked for both when it is read).
 */
export function selectTags(allTags: readonly string[], selector: TagSelector): string[] {
  const unique = [...new Set(allTags)];
  if (isTagList(selector)) {
    const present = new Set(unique);
    return [...new Set(selector)].filter((t) => present.has(t)).sort((a, b) => unique.indexOf(a) - unique.indexOf(b));
  }
  let tags = unique;
  if (selector.include !== undefined) {
    const res = selector.include.map((p) => new RegExp(p));
    tags = tags.filter((t) => res.some((re) => re.test(t)));
  }
  if (selector.exclude !== undefined) {
    const res = selector.exclude.map((p) => new RegExp(p));
    tags = tags.filter((t) => !res.some((re) => re.test(t)));
  }
  if (selector.semver !== undefined) {
    const range = new semver.Range(selector.semver);
    tags = tags.filter((t) => {
      const v = tagVersion(t);
      return v !== undefined && range.test(v);
    });
  }
  if (selector.newest !== undefined && tags.length > selector.newest) {
    const n = selector.newest;
    const versions = tags.map(tagVersion);
    let keep: Set<string>;
    if (selector.semver !== undefined || versions.every((v) => v !== undefined)) {
      const ranked = tags
        .map((t, i) => ({ t, v: versions[i] as SemVer, i }))
        .sort((a, b) => semver.rcompare(a.v, b.v) || a.i - b.i);
      keep = new Set(ranked.slice(0, n).map((x) => x.t));
    } else {
      const ranked = tags.map((t, i) => ({ t, k: versionKey(t), i })).sort((a, b) => compareKeys(b.k, a.k) || a.i - b.i);
      keep = new Set(ranked.slice(0, n).map((x) => x.t));
    }
    tags = tags.filter((t) => keep.has(t));
  }
  return tags;
}

/** How `newest` ranks a tag that is not a semantic version: its leading numbers, then the rest. */
interface VersionKey {
  /** The numbers of a leading `[v]N(.N)*` (empty: not version-like). */
  numbers: number[];
  /** What follows them (for a tag that is not version-like: the whole tag). */
  rest: string;
}

function versionKey(tag: string): VersionKey {
  const m = /^v?(\d+(?:\.\d+)*)(.*)$/.exec(tag);
  if (!m) return { numbers: [], rest: tag };
  return { numbers: (m[1] as string).split(".").map(Number), rest: m[2] as string };
}

/** Orders two keys, lowest first: not version-like < version-like; numbers one by one (missing ones are 0); a suffix < none; suffixes naturally. */
function compareKeys(a: VersionKey, b: VersionKey): number {
  const av = a.numbers.length > 0;
  const bv = b.numbers.length > 0;
  if (av !== bv) return av ? 1 : -1;
  for (let i = 0; i < Math.max(a.numbers.length, b.numbers.length); i++) {
    const d = (a.numbers[i] ?? 0) - (b.numbers[i] ?? 0);
    if (d !== 0) return d;
  }
  if (av && (a.rest === "") !== (b.rest === "")) return a.rest === "" ? 1 : -1;
  return a.rest.localeCompare(b.rest, "en", { numeric: true });
}

/** Reports whether a selector is an explicit list of tags. */
export function isTagList(selector: TagSelector): selector is readonly string[] {
  return Array.isArray(selector);
}

/** Explains why `pattern` is not a valid regular expression, or returns undefined when it is. */
export function regexProblem(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Explains why `range` is not a valid node-semver range, or returns undefined when it is. */
export function semverRangeProblem(range: string): string | undefined {
  return semver.validRange(range) === null ? "not a valid semver range (examples: \">=1.2.0 <2\", \"^1.4\", \"~2.3.1\", \"1.x || >=2.5.0\")" : undefined;
}
