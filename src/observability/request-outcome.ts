/**
 * What the RPC edge reports once a request has been answered: the seam that metrics,
 * the crypto-call audit and request-rate counters hang on, so the hot path knows none of them.
 * Observers run after the answer is written; they must be cheap and must never throw
 * (a throwing observer is caught and logged, never turns an answer into a failure).
 */
export interface RequestOutcome {
  requestId: string;
  /** The action as the client named it (undefined when the request failed before naming one). */
  action?: string | undefined;
  accessKeyId?: string | undefined;
  sourceIp?: string | undefined;
  httpStatus: number;
  /** Alibaba error code for a refusal or failure; undefined on success. */
  code?: string | undefined;
  seconds: number;
  /** From the answer, when the action names them (KeyId / KeyVersionId fields of the result). */
  keyId?: string | undefined;
  keyVersionId?: string | undefined;
}

export type RequestObserver = (outcome: RequestOutcome) => void;

/** Calls every observer; one that throws is reported to `onError` and the rest still run. */
export function notifyObservers(observers: readonly RequestObserver[], outcome: RequestOutcome, onError: (error: unknown) => void): void {
  for (const observe of observers) {
    try {
      observe(outcome);
    } catch (error) {
      onError(error);
    }
  }
}
