// One streaming request by a real JavaScript client; prints one JSON line with what the
// client reported. Used by tests/test_e2e_js.py and scripts/client_matrix.py.
//
//   node client.mjs MODE BASE_URL MODEL [TIMEOUT_MS]
//
// MODE: node-responses-stream  openai-node `responses.stream()` + `finalResponse()`
//       node-responses-raw     openai-node `responses.create({stream: true})`, iterated
//       node-chat-raw          openai-node `chat.completions.create({stream: true})`, iterated
//       node-chat-stream       openai-node `chat.completions.stream()` + `finalChatCompletion()`
//       ai-responses           AI SDK `streamText` over `openai.responses(MODEL)`
//       ai-chat                AI SDK `streamText` over `openai.chat(MODEL)`
//
// The line: {mode, text (what streamed), final (the helper's final result, if any),
// error ({class, name, message, code, type, status}, if one was raised or reported),
// events (event or part types, in order, repeats collapsed), hung, elapsed_ms}; AI SDK
// modes add on_error (what `onError` got) and finish_reason. Client retries are off
// (maxRetries 0): one request, one answer. After TIMEOUT_MS (default 8000) the request
// is aborted and the line says hung: true — the driver never waits forever.

import { createOpenAI } from '@ai-sdk/openai';
import { streamText } from 'ai';
import OpenAI from 'openai';

const [mode, baseURL, model, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg ?? 8000);
const started = Date.now();
const abort = new AbortController();
const report = { mode, text: '', final: null, error: null, events: [], hung: false };

function seen(type) {
  if (report.events.at(-1) !== type) report.events.push(type);
}

/** What a thrown or reported error says: class, name, message and the API fields. */
function describe(error) {
  if (error === null || typeof error !== 'object') return { class: typeof error, message: String(error) };
  const described = {
    class: error.constructor?.name ?? 'Object',
    name: error.name ?? null,
    message: String(error.message ?? '').slice(0, 400),
    code: error.code ?? error.error?.code ?? null,
    type: error.type ?? error.error?.type ?? null,
    status: error.status ?? error.statusCode ?? null,
  };
  // TypeValidationError: the event the client's schema rejected (its message is huge).
  if (typeof error.value?.type === 'string') described.rejected = error.value.type;
  if (error.cause !== undefined && error.cause?.name !== 'ZodError') described.cause = describe(error.cause);
  return described;
}

const node = () => new OpenAI({ baseURL, apiKey: 'sk-test', maxRetries: 0, timeout: timeoutMs });

const modes = {
  async 'node-responses-stream'() {
    const stream = node().responses.stream({ model, input: 'hi' }, { signal: abort.signal });
    for await (const event of stream) {
      seen(event.type);
      if (event.type === 'response.output_text.delta') report.text += event.delta;
    }
    const final = await stream.finalResponse();
    report.final = { status: final.status, output_text: final.output_text, error: final.error ?? null };
  },

  async 'node-responses-raw'() {
    const stream = await node().responses.create(
      { model, input: 'hi', stream: true },
      { signal: abort.signal },
    );
    for await (const event of stream) {
      seen(event.type);
      if (event.type === 'response.output_text.delta') report.text += event.delta;
      if (['response.completed', 'response.failed', 'response.incomplete'].includes(event.type)) {
        const { status, error, output } = event.response;
        report.final = { status, error: error ?? null, output_items: output?.length ?? null };
      }
    }
  },

  async 'node-chat-raw'() {
    const stream = await node().chat.completions.create(
      { model, messages: [{ role: 'user', content: 'hi' }], stream: true },
      { signal: abort.signal },
    );
    for await (const chunk of stream) {
      seen('chunk');
      for (const choice of chunk.choices ?? []) {
        report.text += choice.delta?.content ?? '';
        if (choice.finish_reason) report.final = { finish_reason: choice.finish_reason };
      }
    }
  },

  async 'node-chat-stream'() {
    const stream = node().chat.completions.stream(
      { model, messages: [{ role: 'user', content: 'hi' }] },
      { signal: abort.signal },
    );
    for await (const chunk of stream) {
      seen('chunk');
      for (const choice of chunk.choices ?? []) report.text += choice.delta?.content ?? '';
    }
    const final = await stream.finalChatCompletion();
    const choice = final.choices[0];
    report.final = { finish_reason: choice?.finish_reason ?? null, content: choice?.message?.content ?? null };
  },

  'ai-responses': () => aiSdk((openai) => openai.responses(model)),
  'ai-chat': () => aiSdk((openai) => openai.chat(model)),
};

async function aiSdk(languageModel) {
  const openai = createOpenAI({ baseURL, apiKey: 'sk-test' });
  report.on_error = [];
  const result = streamText({
    model: languageModel(openai),
    prompt: 'hi',
    maxRetries: 0,
    abortSignal: abort.signal,
    onError: ({ error }) => report.on_error.push(describe(error)),
  });
  for await (const part of result.fullStream) {
    seen(part.type);
    if (part.type === 'text-delta') report.text += part.text;
    if (part.type === 'error' && report.error === null) report.error = describe(part.error);
    if (part.type === 'finish') report.finish_reason = part.finishReason;
  }
  try {
    report.final = { text: await result.text };
  } catch (error) {
    report.final = { error: describe(error) };
  }
}

function finish() {
  report.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

if (!(mode in modes)) {
  process.stderr.write(`unknown mode ${mode}; modes: ${Object.keys(modes).join(', ')}\n`);
  process.exit(2);
}
const timer = setTimeout(() => {
  report.hung = true;
  abort.abort();
  setTimeout(finish, 500); // let the abort settle into an error, then report regardless
}, timeoutMs);
try {
  await modes[mode]();
} catch (error) {
  if (report.error === null || !report.hung) report.error = describe(error);
}
clearTimeout(timer);
if (!report.hung) finish();
