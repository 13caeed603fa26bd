// A small labeling-portal client for workforce-service: it creates a workforce and follows the
// accepted operation until it has finished. Every request, response and path below is typed by
// src/schema.d.ts, which `npm run generate` writes from ../../openapi/openapi.json, so a change
// of the API that breaks this code fails `tsc --noEmit`.
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type CreateWorkforceRequest = components["schemas"]["CreateWorkforceRequest"];
export type Operation = components["schemas"]["OperationResponse"];
export type OperationStatus = components["schemas"]["OperationStatus"];
export type Problem = components["schemas"]["Problem"];

export interface PortalClientOptions {
  /** Base URL of the service, such as http://127.0.0.1:8080. */
  baseUrl: string;
  /** API key of the service, sent as `Authorization: Bearer <key>` when set. */
  apiKey?: string | undefined;
  /**
   * Seconds that one read of an unfinished operation waits for it to change (`?wait=`, default
   * 20). Keep it below the service's `--request-timeout-seconds`.
   */
  waitSeconds?: number;
  /** Milliseconds to wait for an operation to finish before giving up (default 10 minutes). */
  timeoutMs?: number;
}

/** Error status returned by the service, with its problem document if there is one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
    what: string,
  ) {
    super(`${what} failed with HTTP ${status}: ${problem?.detail ?? "no problem document"}`);
    this.name = "ApiError";
  }
}

/** The operation did not reach `succeeded` or `failed` in time. */
export class OperationTimeoutError extends Error {
  constructor(
    readonly operation: Operation,
    timeoutMs: number,
  ) {
    super(`operation ${operation.id} is still ${operation.status} after ${timeoutMs} ms`);
    this.name = "OperationTimeoutError";
  }
}

/** Returns whether an operation has finished, for every status the API defines. */
export function isFinished(status: OperationStatus): boolean {
  switch (status) {
    case "succeeded":
    case "failed":
      return true;
    case "pending":
    case "running":
      return false;
    default: {
      // A status added to the API breaks the build here until it is handled.
      const unknown: never = status;
      throw new Error(`unknown operation status ${String(unknown)}`);
    }
  }
}

/**
 * Returns the operation id from a `Location` header such as `/v1/operations/<id>`, which may
 * also be an absolute URL.
 */
export function operationIdFromLocation(location: string): string {
  const path = new URL(location, "http://placeholder.invalid").pathname;
  const match = /^\/v1\/operations\/([^/]+)$/.exec(path);
  if (match?.[1] === undefined) {
    throw new Error(`Location header ${JSON.stringify(location)} is not an operation URL (/v1/operations/<id>)`);
  }
  return decodeURIComponent(match[1]);
}

/** An operation as read, with the `ETag` that came with it. */
interface OperationRead {
  operation: Operation;
  etag: string;
}

export class PortalClient {
  private readonly client: Client<paths>;
  private readonly waitSeconds: number;
  private readonly timeoutMs: number;

  constructor(options: PortalClientOptions) {
    const headers: Record<string, string> = {};
    if (options.apiKey) {
      headers["Authorization"] = `Bearer ${options.apiKey}`;
    }
    this.client = createClient<paths>({ baseUrl: options.baseUrl, headers });
    this.waitSeconds = options.waitSeconds ?? 20;
    this.timeoutMs = options.timeoutMs ?? 10 * 60 * 1000;
  }

  /** Submits a new workforce and returns the accepted operation with its id from `Location`. */
  async createWorkforce(region: string, body: CreateWorkforceRequest): Promise<{ operationId: string; operation: Operation }> {
    const { data, error, response } = await this.client.POST("/v1/regions/{region}/workforces", {
      params: { path: { region } },
      body,
    });
    if (data === undefined) {
      throw new ApiError(response.status, error, `creating workforce ${body.name} in ${region}`);
    }
    const location = response.headers.get("location");
    const operationId = location === null ? data.id : operationIdFromLocation(location);
    if (operationId !== data.id) {
      throw new Error(`Location names operation ${operationId}, but the body names ${data.id}`);
    }
    return { operationId, operation: data };
  }

  async getOperation(id: string): Promise<Operation> {
    const { data, error, response } = await this.client.GET("/v1/operations/{id}", {
      params: { path: { id } },
    });
    if (data === undefined) {
      throw new ApiError(response.status, error, `reading operation ${id}`);
    }
    return data;
  }

  /**
   * Reads the operation until it has `succeeded` or `failed` and returns it. A failed operation
   * is returned, not thrown: its `failure` carries AWS's error code and message. Each read after
   * the first long-polls. It sends the ETag of the previous read, so the service responds as soon
   * as the operation differs from it, or with 304 when the wait ends.
   */
  async waitForOperation(id: string): Promise<Operation> {
    const deadline = Date.now() + this.timeoutMs;
    let last = await this.readOperation(id, undefined, 0);
    for (;;) {
      if (isFinished(last.operation.status)) {
        return last.operation;
      }
      const remainingSeconds = Math.floor((deadline - Date.now()) / 1000);
      if (remainingSeconds < 1) {
        throw new OperationTimeoutError(last.operation, this.timeoutMs);
      }
      last = await this.readOperation(id, last, Math.min(this.waitSeconds, remainingSeconds));
    }
  }

  /**
   * Reads an operation. With `previous`, waits up to `waitSeconds` for the operation to differ
   * from it, and returns `previous` itself when the service responds with 304.
   */
  private async readOperation(id: string, previous: OperationRead | undefined, waitSeconds: number): Promise<OperationRead> {
    const { data, error, response } = await this.client.GET("/v1/operations/{id}", {
      params: {
        path: { id },
        query: waitSeconds > 0 ? { wait: waitSeconds } : {},
        header: previous?.etag ? { "If-None-Match": previous.etag } : {},
      },
    });
    if (response.status === 304 && previous !== undefined) {
      return previous;
    }
    if (data === undefined) {
      throw new ApiError(response.status, error, `reading operation ${id}`);
    }
    return { operation: data, etag: response.headers.get("etag") ?? "" };
  }

  /** Creates a workforce and waits for its operation to finish. */
  async createWorkforceAndWait(region: string, body: CreateWorkforceRequest): Promise<Operation> {
    const { operationId } = await this.createWorkforce(region, body);
    return this.waitForOperation(operationId);
  }
}
