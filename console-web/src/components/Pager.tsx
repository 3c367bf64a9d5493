import { useState } from "react";
import { useSearchParams } from "react-router-dom";

/** Where a list paged by the URL's `page_token` has been: the API pages forward only, so
 * Previous goes back along the tokens of the pages before this one. A search that changes any
 * other parameter of the URL starts a new trail. */
export interface PageTrail {
  hasPrevious: boolean;
  previous: () => void;
  next: (token: string) => void;
}

/** Kept by the page, not by the `Pager`, so that it outlives a page that fails to load. */
export function usePageTrail(): PageTrail {
  const [params, setParams] = useSearchParams();
  const current = params.get("page_token") ?? "";
  const search = new URLSearchParams(params);
  search.delete("page_token");
  const key = search.toString();
  const [trail, setTrail] = useState<{ key: string; tokens: string[] }>({ key, tokens: [] });
  const tokens = current && trail.key === key ? trail.tokens : [];

  function go(token: string, nextTokens: string[]) {
    const next = new URLSearchParams(search);
    if (token) next.set("page_token", token);
    setTrail({ key, tokens: nextTokens });
    setParams(next);
  }

  return {
    hasPrevious: current !== "",
    previous: () => go(tokens[tokens.length - 1] ?? "", tokens.slice(0, -1)),
    next: (token) => go(token, [...tokens, current]),
  };
}

/** Previous / Next buttons over a `usePageTrail`; `nextToken` is the loaded page's
 * `next_page_token` (empty on the last page). */
export function Pager({
  trail,
  nextToken,
  label,
  previousText = "Previous",
  nextText = "Next",
}: {
  trail: PageTrail;
  nextToken: string;
  label: string;
  previousText?: string;
  nextText?: string;
}) {
  return (
    <nav className="pager" aria-label={label}>
      <button type="button" disabled={!trail.hasPrevious} onClick={trail.previous}>
        {previousText}
      </button>
      <button type="button" disabled={!nextToken} onClick={() => trail.next(nextToken)}>
        {nextText}
      </button>
    </nav>
  );
}
