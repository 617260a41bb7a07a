import { fail } from './errors.js';

/**
 * Characters that change how text is shown without being words: bidirectional overrides and
 * isolates ("\u202eheart" displays as "traeh"), zero-width characters, the byte order mark, and C0/C1
 * controls. They carry no meaning in a structure name, and they let a prompt read differently on
 * screen than it matched.
 */
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;

/** HTML or script markup: tags, javascript: URLs, inline event handlers. */
const MARKUP = /<\s*\/?\s*[a-z!?][^>]*>|<\s*[a-z]+[^>]*$|javascript\s*:|\bon[a-z]+\s*=/i;

export interface PromptText {
  /** The prompt as matched and echoed: invisible characters removed, whitespace collapsed. */
  text: string;
  /** Markup is no anatomical name: such a prompt is answered like nonsense (rejected, no mask). */
  markup: boolean;
}

/** Reads a caller's prompt for matching and display; an empty remainder is refused by its index. */
export function readPromptText(raw: string, index: number): PromptText {
  const text = raw.replace(INVISIBLE, '').replace(/\s+/g, ' ').trim();
  if (!text) fail('invalid_argument', `prompts[${index}] is empty once invisible and control characters are removed`, `prompts.${index}`);
  return { text, markup: MARKUP.test(text) };
}
