import { InvalidArgumentError } from '../errors.js';
import { jsonProblem, stringProblem } from './check.js';

/*
 * The door: what callers hand to create(), createMany() and send() (and so what arrives over
 * NATS) is serialised here once, and the parsed form is what the rest of drover sees,
 * validates and stores. A value JSON would change on the way (a class instance, a getter, a
 * toJSON, a BigInt, a cycle) or PostgreSQL would refuse (NUL, a lone surrogate) is refused
 * here with its path, before anything is written, instead of stalling a queue later.
 */

/** The default of the runtime option `maxPayload`: 1 MiB of serialised event or input. */
export const DEFAULT_MAX_PAYLOAD = 1_048_576;

/** How deep objects and arrays may nest in an event or an input. */
export const MAX_PAYLOAD_DEPTH = 64;

/** The longest record id, in characters. */
export const MAX_ID_LENGTH = 200;

// C0 controls and DEL: a CR/LF breaks NATS headers, NUL breaks PostgreSQL text.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * `value` as it reads back from JSON, or an `InvalidArgumentError` naming the path of the
 * first value JSON cannot carry faithfully, or the size when the serialised form is over
 * `maxBytes` (UTF-8 bytes).
 *
 * @example serialised({ n: 1n }, 'input', 1024) // throws: input.n is a BigInt…
 */
export function serialised(value: unknown, what: string, maxBytes: number): unknown {
  if (value === undefined) return undefined;
  const problem = jsonProblem(value, what, { maxDepth: MAX_PAYLOAD_DEPTH });
  if (problem) throw new InvalidArgumentError(problem);
  const text = JSON.stringify(value);
  // Bytes are at least the characters: count them only when it can matter.
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxBytes) {
      throw new InvalidArgumentError(
        `${what} is ${bytes} bytes as JSON, over the limit of ${maxBytes} (the runtime option maxPayload); store large data elsewhere and pass a reference`,
      );
    }
  }
  return JSON.parse(text) as unknown;
}

/**
 * An event as it is stored: a plain object (prototype `Object` or null) with an own, non-empty
 * string `type` not starting `xstate.`, serialised by {@link serialised}.
 */
export function serialisedEvent(event: unknown, maxBytes: number): { type: string } & Record<string, unknown> {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new InvalidArgumentError(`event must be a plain object with a non-empty string \`type\` (got ${describe(event)})`);
  }
  const proto = Object.getPrototypeOf(event) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    throw new InvalidArgumentError('event must be a plain object ({ type, ... }), not a class instance: JSON would keep only its own fields');
  }
  const type = Object.getOwnPropertyDescriptor(event, 'type');
  if (!type || !('value' in type) || typeof type.value !== 'string' || type.value.length === 0) {
    throw new InvalidArgumentError('event must have its own non-empty string `type` field (not a getter, not inherited)');
  }
  if (type.value.startsWith('xstate.')) throw new InvalidArgumentError(`event type "${type.value}" is reserved for XState`);
  return serialised(event, 'event', maxBytes) as { type: string } & Record<string, unknown>;
}

/**
 * Checks a record id given to create(): a non-empty string of at most {@link MAX_ID_LENGTH}
 * characters with no control characters (U+0000–U+001F, U+007F).
 */
export function checkNewId(id: unknown, what = 'id'): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
    throw new InvalidArgumentError(`${what} must be a non-empty string of at most ${MAX_ID_LENGTH} characters (got ${describe(id)})`);
  }
  return checkText(id, what);
}

/** Checks a string argument that is stored or sent as a NATS header: no control characters, no lone surrogates. */
export function checkText(text: string, what: string): string {
  if (CONTROL.test(text)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} contains a control character (U+0000-U+001F or U+007F); use printable characters`);
  }
  const problem = stringProblem(text);
  if (problem) throw new InvalidArgumentError(`${what} ${problem}`);
  return text;
}

/**
 * Checks a string argument that is only looked up (an id or machine name given to get, send,
 * cancel…): a string PostgreSQL can take, so a bad one is a typed error, not a driver error.
 */
export function checkLookup(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidArgumentError(`${what} must be a non-empty string (got ${describe(value)})`);
  const problem = stringProblem(value);
  if (problem) throw new InvalidArgumentError(`${what} ${problem}`);
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}
