/** The closed set of failures the service reports to callers. Programmer errors throw instead. */
export const ERROR_KINDS = [
  'bad_input',
  'invalid_argument',
  'unsupported_format',
  'too_large',
  'unknown_model',
  'unknown_structure',
  'model_unavailable',
  'overloaded',
  'unauthorized',
  'forbidden',
  'deadline_exceeded',
  'upstream_failed',
  'internal',
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface AppError {
  kind: ErrorKind;
  message: string;
  /** Which input field or tag was wrong, when one was. */
  field?: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: AppError };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const err = (kind: ErrorKind, message: string, field?: string): { ok: false; error: AppError } => ({
  ok: false,
  error: field === undefined ? { kind, message } : { kind, message, field },
});

/** Thrown inside core code paths to unwind to the operation boundary with a typed error. */
export class AppFailure extends Error {
  constructor(public readonly error: AppError) {
    super(error.message);
  }
}

export const fail = (kind: ErrorKind, message: string, field?: string): never => {
  throw new AppFailure(field === undefined ? { kind, message } : { kind, message, field });
};
