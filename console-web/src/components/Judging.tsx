import { useEffect } from "react";
import type { ViolationList } from "../api";
import type { Loaded } from "../util";

// The pause between two reads of the violations while the router is still judging the
// catalog: each read judges for a moment (0.2 s), so the catalog is judged quickly while
// someone watches, and not at all while nobody reads.
const JUDGING_POLL_MS = 250;

/** The datasets the router has not judged yet (after a start or another policy): 0 when the
 * list is complete. */
export function datasetsToJudge(list: ViolationList | undefined): number {
  return Number(list?.datasets_to_judge ?? 0);
}

/** While the router is still judging, reads the violations again (each read judges more). */
export function useReadWhileJudging(violations: Loaded<ViolationList>): void {
  const pending = datasetsToJudge(violations.data);
  useEffect(() => {
    if (!pending || violations.loading) return;
    const timer = setTimeout(violations.reload, JUDGING_POLL_MS);
    return () => clearTimeout(timer);
  }, [violations.data, violations.loading]);
}

export function JudgingNotice({ list }: { list: ViolationList }) {
  const pending = datasetsToJudge(list);
  if (!pending) return null;
  return (
    <p className="notice" role="status" data-testid="judging">
      <strong>Judging in progress</strong>: {pending.toLocaleString("en")} datasets are not judged yet (the server has
      just started, or the policy changed). The violations shown are those found so far; this page reads them again
      until every dataset is judged.
    </p>
  );
}
