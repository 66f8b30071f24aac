import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { InputIssue } from '../errors.js';

/** The outcome of {@link validateInput}: the (possibly transformed) input, or the validator's issues. */
export type InputValidation = { ok: true; value: unknown } | { ok: false; issues: InputIssue[] };

/**
 * Validates a record's input with the machine's `input` validator (any Standard Schema:
 * zod, valibot, arktype…). Succeeds with the validator's output, which may differ from the
 * input (defaults, coercions, transforms): that output is what the machine starts from.
 * Without a validator the input passes as it is. The issues' paths are plain keys and
 * indexes from the input's root.
 *
 * @example
 * const checked = await validateInput(order, { qty: '3' });
 * if (!checked.ok) throw new InvalidInputError(order.name, checked.issues);
 */
export async function validateInput(def: { readonly input?: StandardSchemaV1 | undefined }, input: unknown): Promise<InputValidation> {
  if (!def.input) return { ok: true, value: input };
  const result = await def.input['~standard'].validate(input);
  // The spec: a falsy `issues` means success.
  if (result.issues) return { ok: false, issues: result.issues.map(toInputIssue) };
  return { ok: true, value: result.value };
}

/** Whether a value implements Standard Schema v1 (an object or, as arktype's, a function, with `~standard.validate`). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as { '~standard'?: unknown })['~standard'];
  return (
    typeof props === 'object' &&
    props !== null &&
    (props as StandardSchemaV1.Props).version === 1 &&
    typeof (props as StandardSchemaV1.Props).validate === 'function'
  );
}

function toInputIssue(issue: StandardSchemaV1.Issue): InputIssue {
  return { message: issue.message, path: (issue.path ?? []).map((segment) => toKey(typeof segment === 'object' ? segment.key : segment)) };
}

function toKey(key: PropertyKey): string | number {
  return typeof key === 'symbol' ? (key.description ?? key.toString()) : key;
}
