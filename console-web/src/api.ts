// The console's JSON API (docs/console.md): every route is one RPC, answered in the proto3
// JSON mapping. Requests carry the session cookie (same origin); POSTs also the CSRF token.

export interface FieldViolation {
  field: string;
  description: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
    message: string,
    readonly fieldViolations: FieldViolation[] = [],
  ) {
    super(message);
  }
}

export interface SessionInfo {
  principal: string;
  scopes: string[];
  csrf_token: string;
  expires_in_seconds: number;
}

let csrfToken = "";

type Params = Record<string, string | number | undefined | null>;

function query(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function answer<T>(response: Response): Promise<T> {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? String(response.status),
      error.reason ?? "",
      error.message ?? response.statusText,
      error.field_violations ?? [],
    );
  }
  return body as T;
}

export async function get<T>(path: string, params: Params = {}): Promise<T> {
  return answer<T>(await fetch(`/api/v1/${path}${query(params)}`, { credentials: "same-origin" }));
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  const response = await fetch(path.startsWith("/") ? path : `/api/v1/${path}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body),
  });
  return answer<T>(response);
}

export async function loadSession(): Promise<SessionInfo | null> {
  try {
    const session = await get<SessionInfo>("session");
    csrfToken = session.csrf_token;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/** Ends the console's session; the answer's `end_session_url` (after an OpenID Connect
 * sign-in) is where the identity provider ends its own session too. */
export async function signOut(): Promise<{ end_session_url?: string }> {
  const answer = await post<{ end_session_url?: string }>("/signout", {});
  csrfToken = "";
  return answer;
}

// ---- response shapes (the .proto messages in JSON) ----------------------------------------

export interface Dataset {
  id: string;
  name: string;
  owner: string;
  description: string;
  classifications: string[];
  origins: string[];
  locations: string[];
  tags: Record<string, string>;
  fields: { name: string; classifications: string[] }[];
  protection?: { encrypted_at_rest: boolean; field_level_encrypted: boolean; tokenized: boolean };
  revision: string;
  create_time?: string;
  update_time?: string;
  placeholder: boolean;
  updated_by: string;
}

export interface Region {
  id: string;
  country: string;
  provider: string;
  name: string;
  display_name: string;
  private: boolean;
}

export interface Reason {
  code: string;
  rule_id: string;
  message: string;
  lineage_path: string[];
  citation: string;
}

export interface Decision {
  decision_id: string;
  outcome: "OUTCOME_ALLOW" | "OUTCOME_DENY" | "OUTCOME_UNSPECIFIED";
  dataset_id: string;
  operation: "OPERATION_STORE" | "OPERATION_PROCESS" | "OPERATION_UNSPECIFIED";
  region: string;
  allowed_regions: string[];
  reasons: Reason[];
  policy_version: string;
  catalog_revision: string;
  decide_time?: string;
  inherited_only: boolean;
}

/** How GetDecision verified a decision in the decision log. */
export interface DecisionProof {
  replica_id: string;
  line_seq: string;
  line_hash: string;
  // False: no signed checkpoint covers the line yet (the live chain, verified at start, holds it).
  checkpoint_verified: boolean;
  checkpoint_seq: string;
  checkpoint_hash: string;
  checkpoint_time?: string;
  checkpoint_key_id: string;
}

export interface LoggedDecision {
  decision: Decision;
  caller: string;
  kind: string;
  line: string;
  line_hash: string;
}

export interface EffectiveAttribute {
  value: string;
  lineage_path: string[];
}

export interface Explanation {
  classifications: EffectiveAttribute[];
  origins: EffectiveAttribute[];
  store_regions: string[];
  process_regions: string[];
  policy_version: string;
  catalog_revision: string;
  inherited_only: boolean;
  unapproved_declassifications: { input: string; output: string; job: string; transform: string; classifications: string[] }[];
}

export interface LineageEdge {
  input: string;
  output: string;
  job: string;
  transform: string;
  run_id: string;
  record_time?: string;
  end_time?: string;
  // The transform is a declassifier the active policy does not grant the job.
  unapproved_declassification?: boolean;
}

export interface Lineage {
  nodes: { dataset_id: string; depth: number; placeholder: boolean }[];
  edges: LineageEdge[];
  complete: boolean;
  incomplete_reason: string;
}

export interface LocationViolation {
  dataset_id: string;
  region: string;
  allowed_regions: string[];
  reasons: Reason[];
  inherited_only: boolean;
}

export interface ViolationList {
  violations: LocationViolation[];
  next_page_token: string;
  total: string;
  regions: { region: string; violations: string }[];
  policy_version: string;
  catalog_revision: string;
  // Absent (0) once the router has judged every dataset.
  datasets_to_judge?: string;
}

export type ResidencyState =
  | "RESIDENCY_STATE_ALLOWED"
  | "RESIDENCY_STATE_VIOLATION"
  | "RESIDENCY_STATE_DERIVED"
  | "RESIDENCY_STATE_UNDESCRIBED"
  | "RESIDENCY_STATE_UNKNOWN";

export interface DatasetResidency {
  dataset_id: string;
  state: ResidencyState;
  locations: string[];
  violating_regions: string[];
}

export interface PolicyChange {
  dataset_id: string;
  operation: string;
  added_regions: string[];
  removed_regions: string[];
  new_violations: string[];
}

export interface PolicyError {
  line: number;
  column: number;
  path: string;
  message: string;
}

export interface SecurityEvent {
  time: string;
  event: string;
  outcome: string;
  principal: string;
  method: string;
  peer: string;
  trace_id: string;
  reason: string;
  detail: Record<string, unknown>;
}

export const SCOPE_OF: Record<string, string> = {
  datasets: "catalog:read",
  lineage: "lineage:read",
  explain: "residency:decide",
  decisions: "audit:read",
  policy: "audit:read or policy:admin",
  security: "audit:read",
};

export type AccessOperation =
  | "ACCESS_OPERATION_READ"
  | "ACCESS_OPERATION_WRITE"
  | "ACCESS_OPERATION_CATALOG_WRITE"
  | "ACCESS_OPERATION_INTENT_STORE"
  | "ACCESS_OPERATION_INTENT_PROCESS";

export interface AccessSummary {
  operation: AccessOperation;
  region: string;
  count: string;
  first_seen?: string;
  last_seen?: string;
}

export interface ActorAccess {
  actor: string;
  accesses: AccessSummary[];
  total_count: string;
  first_seen?: string;
  last_seen?: string;
}

export interface DatasetAccess {
  dataset_id: string;
  accesses: AccessSummary[];
  total_count: string;
  first_seen?: string;
  last_seen?: string;
}

export interface AccessRun {
  job: string;
  run_id: string;
  producer: string;
  principal: string;
  run_region: string;
  event_time?: string;
  last_event_time?: string;
  accesses: { dataset_id: string; operation: AccessOperation; region: string }[];
}

export interface ObservedViolation {
  violation_id: string;
  kind: string;
  job: string;
  run_id: string;
  principal: string;
  dataset_id: string;
  operation: Decision["operation"];
  region: string;
  event_time?: string;
  observe_time?: string;
  late: boolean;
  decision?: Decision;
  message: string;
}

export interface AccessAnomaly {
  anomaly_id: string;
  kind: string;
  actor: string;
  dataset_ids: string[];
  value: string;
  detect_time?: string;
  baseline: string[];
  message: string;
}
