'use strict';
// Tests for runtimes/node/bootstrap.js.
//
// Each test starts a fake Lambda Runtime API (2018-06-01) on 127.0.0.1:0,
// writes handler files into a temporary task root, spawns
// `node bootstrap.js` against it and asserts on what the runtime posts back.
//
// Run from the repository root: node --test runtimes/node/tests/

const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

// TERN_NODE_BOOTSTRAP lets the suite run against another copy (e.g. mutation checks).
const BOOTSTRAP = process.env.TERN_NODE_BOOTSTRAP || path.resolve(__dirname, '..', 'bootstrap.js');
const PREFIX = '/2018-06-01/runtime';
const WAIT_MS = 5000;

/** Fake Runtime API: queues events, holds /next long polls, records posts. */
function startFakeApi() {
  const queue = [];
  const waiting = []; // pending /next responses
  const posts = [];
  const postWaiters = [];
  let nextCalls = 0;
  let responseStatus = () => 202;

  function deliver(res, ev) {
    const headers = Object.assign(
      {
        'Content-Type': 'application/json',
        'Lambda-Runtime-Aws-Request-Id': ev.id,
        'Lambda-Runtime-Deadline-Ms': String(Date.now() + (ev.timeoutMs || 30000)),
        'Lambda-Runtime-Invoked-Function-Arn': 'arn:aws:lambda:us-east-1:123456789012:function:test-fn',
        'Lambda-Runtime-Trace-Id': `Root=1-00000000-${ev.id}`,
      },
      ev.headers || {},
    );
    res.writeHead(200, headers);
    res.end(typeof ev.body === 'string' ? ev.body : JSON.stringify(ev.body === undefined ? {} : ev.body));
  }

  function notify() {
    for (let i = postWaiters.length - 1; i >= 0; i--) {
      const w = postWaiters[i];
      if (posts.length >= w.n) {
        postWaiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(posts.slice());
      }
    }
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'GET' && req.url === `${PREFIX}/invocation/next`) {
        nextCalls++;
        const ev = queue.shift();
        if (ev) deliver(res, ev);
        else waiting.push(res);
        return;
      }
      if (req.method === 'POST') {
        const m = req.url.match(/^\/2018-06-01\/runtime\/(?:invocation\/([^/]+)\/(response|error)|(init)\/error)$/);
        if (!m) {
          res.writeHead(404);
          res.end();
          return;
        }
        const kind = m[3] ? 'init-error' : m[2];
        const rec = {
          kind,
          id: m[1] ? decodeURIComponent(m[1]) : undefined,
          headers: req.headers,
          raw: body,
          json: (() => {
            try {
              return JSON.parse(body);
            } catch (_e) {
              return undefined;
            }
          })(),
        };
        posts.push(rec);
        const status = kind === 'response' ? responseStatus(rec) : 202;
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(status >= 300 ? '{"errorMessage":"rejected","errorType":"RequestTooLarge"}' : '{"status":"OK"}');
        notify();
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });

  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        address: `127.0.0.1:${port}`,
        posts,
        get nextCalls() {
          return nextCalls;
        },
        setResponseStatus(fn) {
          responseStatus = fn;
        },
        push(ev) {
          const res = waiting.shift();
          if (res) deliver(res, ev);
          else queue.push(ev);
        },
        waitForPosts(n) {
          if (posts.length >= n) return Promise.resolve(posts.slice());
          return new Promise((res, rej) => {
            const w = { n, resolve: res };
            w.timer = setTimeout(() => {
              postWaiters.splice(postWaiters.indexOf(w), 1);
              rej(new Error(`timed out waiting for ${n} post(s); got ${JSON.stringify(posts, null, 1)}`));
            }, WAIT_MS);
            postWaiters.push(w);
          });
        },
        close() {
          for (const r of waiting) r.destroy();
          server.closeAllConnections();
          server.close();
        },
      });
    });
  });
}

/**
 * Start a runtime process.
 * opts.files: { relativePath: contents } written under a fresh task root.
 * opts.handler: _HANDLER value. opts.events: events queued before start.
 * opts.startedAhead: start it as tern starts a runtime ahead of its instance, with a
 * config descriptor (fd 3); `rt.configure(env)` then writes the instance's environment.
 */
async function startRuntime(t, opts) {
  const api = await startFakeApi();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-node-rt-'));
  for (const [rel, contents] of Object.entries(opts.files || {})) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, contents);
  }
  if (opts.responseStatus) api.setResponseStatus(opts.responseStatus);
  for (const ev of opts.events || []) api.push(ev);

  const child = spawn(process.execPath, [BOOTSTRAP], {
    cwd: root,
    env: Object.assign(
      {
        PATH: process.env.PATH,
        AWS_LAMBDA_RUNTIME_API: api.address,
        _HANDLER: opts.handler || 'app.handler',
        LAMBDA_TASK_ROOT: root,
        AWS_LAMBDA_FUNCTION_NAME: 'test-fn',
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
        AWS_LAMBDA_LOG_GROUP_NAME: '/aws/lambda/test-fn',
        AWS_LAMBDA_LOG_STREAM_NAME: '2024/01/01/[$LATEST]abcdef',
      },
      opts.env || {},
      opts.startedAhead ? { TERN_CONFIG_FD: '3' } : {},
    ),
    stdio: opts.startedAhead ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    api.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  return {
    api,
    child,
    out,
    root,
    exited,
    configure(env) {
      child.stdio[3].end(JSON.stringify({ env: Object.assign({ AWS_LAMBDA_RUNTIME_API: api.address }, env) }));
    },
    waitExit() {
      return Promise.race([
        exited,
        new Promise((_, rej) =>
          setTimeout(() => rej(new Error(`runtime did not exit; stderr=${out.stderr}`)), WAIT_MS).unref(),
        ),
      ]);
    },
    async waitForOutput(re) {
      const start = Date.now();
      while (!re.test(out.stdout)) {
        if (Date.now() - start > WAIT_MS) throw new Error(`no output matching ${re}; stdout=${out.stdout}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

// ---------------------------------------------------------------------------

test('async handler result is posted as JSON', async (t) => {
  const rt = await startRuntime(t, {
    files: { 'app.js': 'exports.handler = async (event) => ({ echo: event.x, n: 42 });' },
    events: [{ id: 'req-async', body: { x: 'hello' } }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  assert.equal(p.id, 'req-async');
  assert.deepEqual(p.json, { echo: 'hello', n: 42 });
  assert.equal(rt.child.exitCode, null, 'runtime keeps running after an invocation');
});

test('callback-style handler result is posted', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = function (event, context, callback) {
        setTimeout(() => callback(null, { sum: event.a + event.b }), 10);
      };`,
    },
    events: [{ id: 'req-cb', body: { a: 2, b: 3 } }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  assert.equal(p.id, 'req-cb');
  assert.deepEqual(p.json, { sum: 5 });
});

test('callback error is posted as an invocation error', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = (event, context, callback) => callback(new TypeError('bad input'));`,
    },
    events: [{ id: 'req-cberr' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'error');
  assert.equal(p.json.errorType, 'TypeError');
  assert.equal(p.json.errorMessage, 'bad input');
});

test('callbackWaitsForEmptyEventLoop=true waits for pending timers, false does not', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = (event, context, callback) => {
        context.callbackWaitsForEmptyEventLoop = event.wait;
        setTimeout(() => {}, event.wait ? 150 : 3000);
        callback(null, 'done');
      };`,
    },
    events: [{ id: 'req-wait', body: { wait: true } }],
  });
  const started = Date.now();
  const [p1] = await rt.api.waitForPosts(1);
  assert.equal(p1.json, 'done');
  assert.ok(Date.now() - started >= 140, 'response must wait for the timer to fire');

  const t2 = Date.now();
  rt.api.push({ id: 'req-nowait', body: { wait: false } });
  const posts = await rt.api.waitForPosts(2);
  assert.equal(posts[1].json, 'done');
  assert.ok(Date.now() - t2 < 1500, 'response must not wait for the timer');
});

test('event and context fields are passed to the handler', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = async (event, context) => ({
        event,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        memoryLimitInMB: context.memoryLimitInMB,
        awsRequestId: context.awsRequestId,
        invokedFunctionArn: context.invokedFunctionArn,
        logGroupName: context.logGroupName,
        logStreamName: context.logStreamName,
        remaining: context.getRemainingTimeInMillis(),
        waits: context.callbackWaitsForEmptyEventLoop,
        identity: context.identity,
        clientContext: context.clientContext,
        traceId: process.env._X_AMZN_TRACE_ID,
        hasLegacy: [typeof context.done, typeof context.succeed, typeof context.fail],
      });`,
    },
    events: [
      {
        id: 'req-ctx-1',
        body: { nested: { list: [1, 2, 3] }, s: 'x' },
        timeoutMs: 10000,
        headers: {
          'Lambda-Runtime-Cognito-Identity': JSON.stringify({ cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' }),
          'Lambda-Runtime-Client-Context': JSON.stringify({ custom: { k: 'v' } }),
        },
      },
    ],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  const r = p.json;
  assert.deepEqual(r.event, { nested: { list: [1, 2, 3] }, s: 'x' });
  assert.equal(r.functionName, 'test-fn');
  assert.equal(r.functionVersion, '$LATEST');
  assert.equal(r.memoryLimitInMB, '256');
  assert.equal(r.awsRequestId, 'req-ctx-1');
  assert.equal(r.invokedFunctionArn, 'arn:aws:lambda:us-east-1:123456789012:function:test-fn');
  assert.equal(r.logGroupName, '/aws/lambda/test-fn');
  assert.equal(r.logStreamName, '2024/01/01/[$LATEST]abcdef');
  assert.ok(r.remaining > 0 && r.remaining <= 10000, `remaining=${r.remaining}`);
  assert.equal(r.waits, true);
  assert.deepEqual(r.identity, { cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' });
  assert.deepEqual(r.clientContext, { custom: { k: 'v' } });
  assert.equal(r.traceId, 'Root=1-00000000-req-ctx-1');
  assert.deepEqual(r.hasLegacy, ['function', 'function', 'function']);
});

test('thrown Error is posted with errorType, errorMessage and trace', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `class ValidationError extends Error { constructor(m) { super(m); this.name = 'ValidationError'; } }
      exports.handler = async () => { throw new ValidationError('missing field "id"'); };`,
    },
    events: [{ id: 'req-err' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'error');
  assert.equal(p.id, 'req-err');
  assert.equal(p.headers['lambda-runtime-function-error-type'], 'Unhandled');
  assert.equal(p.json.errorType, 'ValidationError');
  assert.equal(p.json.errorMessage, 'missing field "id"');
  assert.ok(Array.isArray(p.json.trace));
  assert.equal(p.json.trace[0], 'ValidationError: missing field "id"');
  assert.ok(p.json.trace.some((l) => /^\s+at .*app\.js/.test(l)), p.json.trace.join('\n'));
  // Lambda-style "Invoke Error" log line on stdout.
  await rt.waitForOutput(/\treq-err\tERROR\tInvoke Error \t\{/);
  const line = rt.out.stdout.split('\n').find((l) => l.includes('Invoke Error'));
  const logged = JSON.parse(line.split('Invoke Error \t')[1]);
  assert.equal(logged.errorType, 'ValidationError');
  assert.equal(logged.errorMessage, 'missing field "id"');
  assert.ok(Array.isArray(logged.stack));
  // The runtime keeps serving after a handled invocation error.
  rt.api.push({ id: 'req-after-err' });
  const posts = await rt.api.waitForPosts(2);
  assert.equal(posts[1].kind, 'error');
  assert.equal(posts[1].id, 'req-after-err');
});

test('thrown non-Error values and sync throws', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.str = async () => { throw 'plain string'; };`,
    },
    handler: 'app.str',
    events: [{ id: 'req-str' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'error');
  assert.deepEqual(p.json, { errorType: 'string', errorMessage: 'plain string', trace: [] });

  const rt2 = await startRuntime(t, {
    files: { 'app.js': `exports.sync = (event, context, callback) => { throw new RangeError('sync boom'); };` },
    handler: 'app.sync',
    events: [{ id: 'req-sync' }],
  });
  const [p2] = await rt2.api.waitForPosts(1);
  assert.equal(p2.kind, 'error');
  assert.equal(p2.json.errorType, 'RangeError');
  assert.equal(p2.json.errorMessage, 'sync boom');
});

test('missing module reports Runtime.ImportModuleError via init/error and exits 1', async (t) => {
  const rt = await startRuntime(t, {
    files: { 'other.js': 'exports.handler = async () => 1;' },
    handler: 'app.handler',
    events: [{ id: 'never' }],
  });
  const { code } = await rt.waitExit();
  assert.equal(code, 1);
  assert.equal(rt.api.posts.length, 1);
  const [p] = rt.api.posts;
  assert.equal(p.kind, 'init-error');
  assert.equal(p.headers['lambda-runtime-function-error-type'], 'Runtime.ImportModuleError');
  assert.equal(p.json.errorType, 'Runtime.ImportModuleError');
  assert.ok(p.json.errorMessage.startsWith("Error: Cannot find module 'app'"), p.json.errorMessage);
  assert.ok(Array.isArray(p.json.trace) && p.json.trace.length > 0);
  assert.equal(rt.api.nextCalls, 0, 'must not poll for invocations after an init error');
  assert.match(rt.out.stderr, /\tERROR\tUncaught Exception \t\{"errorType":"Runtime.ImportModuleError"/);
});

test('missing export reports Runtime.HandlerNotFound via init/error and exits 1', async (t) => {
  const rt = await startRuntime(t, {
    files: { 'app.js': 'exports.other = async () => 1;' },
    handler: 'app.handler',
  });
  const { code } = await rt.waitExit();
  assert.equal(code, 1);
  const [p] = rt.api.posts;
  assert.equal(p.kind, 'init-error');
  assert.equal(p.headers['lambda-runtime-function-error-type'], 'Runtime.HandlerNotFound');
  assert.equal(p.json.errorType, 'Runtime.HandlerNotFound');
  assert.equal(p.json.errorMessage, 'app.handler is undefined or not exported');
});

test('malformed handler name, syntax error and init-time throw are init errors', async (t) => {
  const cases = [
    { handler: 'app', files: { 'app.js': 'exports.handler = () => 1;' }, type: 'Runtime.MalformedHandlerName', msg: /^Bad handler$/ },
    { handler: 'app.handler', files: { 'app.js': 'exports.handler = () => {;' }, type: 'Runtime.UserCodeSyntaxError', msg: /^SyntaxError: / },
    {
      handler: 'app.handler',
      files: { 'app.js': "class ConfigError extends Error {} ConfigError.prototype.name = 'ConfigError'; throw new ConfigError('no config');" },
      type: 'ConfigError',
      msg: /^no config$/,
    },
  ];
  const runs = await Promise.all(cases.map((c) => startRuntime(t, { handler: c.handler, files: c.files })));
  for (let i = 0; i < cases.length; i++) {
    const { code } = await runs[i].waitExit();
    assert.equal(code, 1, cases[i].type);
    const [p] = runs[i].api.posts;
    assert.equal(p.kind, 'init-error');
    assert.equal(p.json.errorType, cases[i].type);
    assert.match(p.json.errorMessage, cases[i].msg);
  }
});

test('.mjs ES module handler is loaded via import()', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.mjs': `import { sep } from 'node:path';
      const loadedAt = await Promise.resolve('top-level-await');
      export const handler = async (event) => ({ esm: typeof require === 'undefined', sep, loadedAt, v: event.v });`,
    },
    events: [{ id: 'req-esm', body: { v: 7 } }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  assert.deepEqual(p.json, { esm: true, sep: path.sep, loadedAt: 'top-level-await', v: 7 });
});

test('.js with package.json type=module, .cjs, subdirectory and nested handlers', async (t) => {
  const esm = await startRuntime(t, {
    files: {
      'package.json': '{"type":"module"}',
      'src/app.js': 'export const handlers = { api: { get: async () => "esm-js" } };',
    },
    handler: 'src/app.handlers.api.get',
    events: [{ id: 'a' }],
  });
  const cjs = await startRuntime(t, {
    files: { 'lib/app.cjs': 'module.exports.handler = async () => "cjs";' },
    handler: 'lib/app.handler',
    events: [{ id: 'b' }],
  });
  const [p1] = await esm.api.waitForPosts(1);
  const [p2] = await cjs.api.waitForPosts(1);
  assert.equal(p1.json, 'esm-js', p1.raw);
  assert.equal(p2.json, 'cjs', p2.raw);
});

test('two invocations in one process reuse module state', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `let count = 0; const pid = process.pid;
      exports.handler = async () => ({ count: ++count, pid });`,
    },
    events: [{ id: 'req-1' }, { id: 'req-2' }],
  });
  const posts = await rt.api.waitForPosts(2);
  assert.deepEqual(posts.map((p) => p.id), ['req-1', 'req-2']);
  assert.equal(posts[0].json.count, 1);
  assert.equal(posts[1].json.count, 2);
  assert.equal(posts[0].json.pid, posts[1].json.pid);
  assert.equal(posts[0].json.pid, rt.child.pid);
});

test('undefined result is posted as null; sync return values are used', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = async () => undefined;`,
    },
    events: [{ id: 'req-undef' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  assert.equal(p.raw, 'null');

  const rt2 = await startRuntime(t, {
    files: { 'app.js': `exports.handler = (event) => ({ sync: true });` },
    events: [{ id: 'req-sync-val' }],
  });
  const [p2] = await rt2.api.waitForPosts(1);
  assert.deepEqual(p2.json, { sync: true });

  const rt3 = await startRuntime(t, {
    files: { 'app.js': `exports.none = (event) => { setTimeout(() => {}, 20); };` },
    handler: 'app.none',
    events: [{ id: 'req-none' }],
  });
  const [p3] = await rt3.api.waitForPosts(1);
  assert.equal(p3.raw, 'null');
});

test('console output is formatted like Lambda', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `console.log('at init');
      exports.handler = async () => {
        console.log('hello %s', 'world', { a: 1 });
        console.info('info');
        console.warn('warn');
        console.error('error');
        console.debug('debug');
        console.log('line1\\nline2');
        return 1;
      };`,
    },
    events: [{ id: 'req-log' }],
  });
  await rt.api.waitForPosts(1);
  await rt.waitForOutput(/line2/);
  const lines = rt.out.stdout.split('\n').filter(Boolean);
  const ts = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
  assert.match(lines[0], new RegExp(`^${ts}\\tundefined\\tINFO\\tat init$`));
  assert.match(lines[1], new RegExp(`^${ts}\\treq-log\\tINFO\\thello world \\{ a: 1 \\}$`));
  assert.match(lines[2], /\treq-log\tINFO\tinfo$/);
  assert.match(lines[3], /\treq-log\tWARN\twarn$/);
  assert.match(lines[4], /\treq-log\tERROR\terror$/);
  assert.match(lines[5], /\treq-log\tDEBUG\tdebug$/);
  assert.match(lines[6], /\treq-log\tINFO\tline1\rline2$/);
});

test('non-serializable result reports Runtime.MarshalError', async (t) => {
  const rt = await startRuntime(t, {
    files: { 'app.js': 'exports.handler = async () => { const o = {}; o.self = o; return o; };' },
    events: [{ id: 'req-circ' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'error');
  assert.equal(p.json.errorType, 'Runtime.MarshalError');
  assert.equal(p.json.errorMessage, 'Unable to stringify response body');
});

test('non-2xx from /response does not stop the loop', async (t) => {
  const rt = await startRuntime(t, {
    files: { 'app.js': 'exports.handler = async (e) => e.big ? "x".repeat(1000) : "small";' },
    events: [{ id: 'req-big', body: { big: true } }, { id: 'req-small', body: {} }],
    responseStatus: (rec) => (rec.id === 'req-big' ? 413 : 202),
  });
  const posts = await rt.api.waitForPosts(2);
  assert.deepEqual(posts.map((p) => [p.id, p.kind]), [['req-big', 'response'], ['req-small', 'response']]);
  assert.equal(posts[1].json, 'small');
  assert.equal(rt.child.exitCode, null);
});

test('unhandled rejection and uncaught exception fail the invocation and exit', async (t) => {
  const rej = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = async () => {
        Promise.reject(new Error('floating'));
        await new Promise((r) => setTimeout(r, 500));
        return 'too late';
      };`,
    },
    events: [{ id: 'req-rej' }],
  });
  const unc = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = async () => {
        setTimeout(() => { throw new SyntaxError('in timer'); }, 5);
        await new Promise((r) => setTimeout(r, 500));
        return 'too late';
      };`,
    },
    events: [{ id: 'req-unc' }],
  });
  const [p1] = await rej.api.waitForPosts(1);
  assert.equal(p1.kind, 'error');
  assert.equal(p1.id, 'req-rej');
  assert.equal(p1.json.errorType, 'Runtime.UnhandledPromiseRejection');
  assert.equal(p1.json.errorMessage, 'Error: floating');
  const e1 = await rej.waitExit();
  assert.notEqual(e1.code, 0);

  const [p2] = await unc.api.waitForPosts(1);
  assert.equal(p2.kind, 'error');
  assert.equal(p2.json.errorType, 'SyntaxError');
  assert.equal(p2.json.errorMessage, 'in timer');
  const e2 = await unc.waitExit();
  assert.notEqual(e2.code, 0);
  assert.equal(rej.api.posts.length, 1);
  assert.equal(unc.api.posts.length, 1);
});

test('legacy context.succeed / context.fail complete the invocation', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `exports.handler = (event, context) => {
        setTimeout(() => event.ok ? context.succeed({ legacy: true }) : context.fail(new Error('legacy fail')), 5);
      };`,
    },
    events: [{ id: 'l1', body: { ok: true } }, { id: 'l2', body: { ok: false } }],
  });
  const posts = await rt.api.waitForPosts(2);
  assert.equal(posts[0].kind, 'response');
  assert.deepEqual(posts[0].json, { legacy: true });
  assert.equal(posts[1].kind, 'error');
  assert.equal(posts[1].json.errorMessage, 'legacy fail');
});

test('a runtime started ahead waits for its config, then adopts handler, env and code dir', async (t) => {
  const code = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-node-late-'));
  t.after(() => fs.rmSync(code, { recursive: true, force: true }));
  fs.writeFileSync(
    path.join(code, 'late.js'),
    'exports.handler = async (e, c) => ({ name: c.functionName, greeting: process.env.GREETING, cwd: process.cwd(), fd: process.env.TERN_CONFIG_FD, stale: process.env.STALE });',
  );
  const rt = await startRuntime(t, {
    handler: '',
    startedAhead: true,
    env: { AWS_LAMBDA_FUNCTION_NAME: '', STALE: 'start-up only' },
    events: [{ id: 'req-late', body: {} }],
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(rt.api.nextCalls, 0, 'no invocation before the config');
  rt.configure({
    _HANDLER: 'late.handler',
    AWS_LAMBDA_FUNCTION_NAME: 'assigned',
    GREETING: 'hello',
    LAMBDA_TASK_ROOT: code,
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'response');
  assert.deepEqual(p.json, { name: 'assigned', greeting: 'hello', cwd: fs.realpathSync(code) });
});

test('each request sees its own trace id in process.env, and so do its child processes', async (t) => {
  const rt = await startRuntime(t, {
    files: {
      'app.js': `const { execFileSync } = require('child_process');
      exports.handler = async () => ({
        env: process.env._X_AMZN_TRACE_ID,
        has: '_X_AMZN_TRACE_ID' in process.env,
        listed: Object.keys(process.env).includes('_X_AMZN_TRACE_ID'),
        spread: { ...process.env }._X_AMZN_TRACE_ID,
        child: execFileSync(process.execPath, ['-p', 'process.env._X_AMZN_TRACE_ID']).toString().trim(),
      });`,
    },
    events: [{ id: 'req-tr-1' }, { id: 'req-tr-2' }],
  });
  const posts = await rt.api.waitForPosts(2);
  for (const [i, p] of posts.entries()) {
    const want = `Root=1-00000000-req-tr-${i + 1}`;
    assert.deepEqual(p.json, { env: want, has: true, listed: true, spread: want, child: want });
  }
});

test('context.clientContext is the decoded client context, with client, custom and env', async (t) => {
  const clientContext = {
    client: {
      installation_id: 'inst-1',
      app_title: 'Shop',
      app_version_name: '1.2',
      app_version_code: '12',
      app_package_name: 'com.example.shop',
    },
    custom: { cart: '42' },
    env: { platform: 'Android', locale: 'en_US' },
  };
  const rt = await startRuntime(t, {
    files: { 'app.js': 'exports.handler = async (e, c) => ({ cc: c.clientContext === undefined ? "absent" : c.clientContext });' },
    events: [
      { id: 'req-cc', headers: { 'Lambda-Runtime-Client-Context': JSON.stringify(clientContext) } },
      { id: 'req-no-cc' },
    ],
  });
  const [withCc, without] = await rt.api.waitForPosts(2);
  assert.deepEqual(withCc.json, { cc: clientContext });
  assert.deepEqual(without.json, { cc: 'absent' });
});

test('JSON log format: one object per console call with timestamp, level, requestId, message', async (t) => {
  const rt = await startRuntime(t, {
    env: { AWS_LAMBDA_LOG_FORMAT: 'JSON' },
    files: {
      'app.js': `exports.handler = async () => {
        console.log('hello %s', 'world');
        console.info({ order: 17 });
        console.warn('line1\\nline2');
        console.error('failed', new TypeError('bad sku'));
        return 1;
      };`,
    },
    events: [{ id: 'req-json' }],
  });
  await rt.api.waitForPosts(1);
  await rt.waitForOutput(/bad sku/);
  const records = rt.out.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ts = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
  for (const r of records) assert.match(r.timestamp, ts);
  const strip = ({ timestamp, ...rest }) => rest;
  assert.deepEqual(strip(records[0]), { level: 'INFO', requestId: 'req-json', message: 'hello world' });
  assert.deepEqual(records[1].message, { order: 17 });
  assert.equal(records[2].message, 'line1\nline2');
  assert.doesNotMatch(rt.out.stdout, /line1\nline2/, 'a multi-line message stays one line');
  assert.equal(records[3].level, 'ERROR');
  assert.equal(records[3].errorType, 'TypeError');
  assert.equal(records[3].errorMessage, 'bad sku');
  assert.ok(Array.isArray(records[3].stackTrace) && records[3].stackTrace[0] === 'TypeError: bad sku');
  assert.equal(records.length, 4);
});

test('log level filters console methods below it (FATAL never)', async (t) => {
  const rt = await startRuntime(t, {
    env: { AWS_LAMBDA_LOG_FORMAT: 'JSON', AWS_LAMBDA_LOG_LEVEL: 'warn' },
    files: {
      'app.js': `exports.handler = async () => {
        console.trace('t'); console.debug('d'); console.info('i'); console.log('l');
        console.warn('w'); console.error('e'); console.fatal('f');
        return 1;
      };`,
    },
    events: [{ id: 'req-level' }],
  });
  await rt.api.waitForPosts(1);
  await rt.waitForOutput(/"f"/);
  const records = rt.out.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(records.map((r) => [r.level, r.message]), [['WARN', 'w'], ['ERROR', 'e'], ['FATAL', 'f']]);
});

test('JSON log format for an invocation error', async (t) => {
  const rt = await startRuntime(t, {
    env: { AWS_LAMBDA_LOG_FORMAT: 'JSON' },
    files: { 'app.js': `exports.handler = async () => { throw new RangeError('too far'); };` },
    events: [{ id: 'req-jerr' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  assert.equal(p.kind, 'error');
  await rt.waitForOutput(/too far/);
  const [record] = rt.out.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(record.level, 'ERROR');
  assert.equal(record.requestId, 'req-jerr');
  assert.equal(record.message.errorType, 'RangeError');
  assert.equal(record.message.errorMessage, 'too far');
});

test('a runtime started ahead takes its log format and level from its config', async (t) => {
  const code = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-node-late-'));
  t.after(() => fs.rmSync(code, { recursive: true, force: true }));
  fs.writeFileSync(path.join(code, 'late.js'), 'exports.handler = async () => { console.debug("hidden"); console.warn("shown"); return 1; };');
  const rt = await startRuntime(t, {
    handler: '',
    startedAhead: true,
    events: [{ id: 'req-late-log', body: {} }],
  });
  rt.configure({
    _HANDLER: 'late.handler',
    AWS_LAMBDA_LOG_FORMAT: 'JSON',
    AWS_LAMBDA_LOG_LEVEL: 'INFO',
    LAMBDA_TASK_ROOT: code,
  });
  await rt.api.waitForPosts(1);
  await rt.waitForOutput(/shown/);
  const records = rt.out.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(records.map((r) => [r.level, r.message]), [['WARN', 'shown']]);
});

test('module resolution searches NODE_PATH, HOME and Lambda\'s prefix, never the host\'s', async (t) => {
  const rt = await startRuntime(t, {
    env: { NODE_PATH: '/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/task', HOME: '/tmp' },
    files: {
      'app.js': `exports.handler = async () => ({
        globalPaths: require('module').globalPaths,
        resolve: require.resolve.paths('some-package'),
        execPath: process.execPath,
      });`,
    },
    events: [{ id: 'req-paths' }],
  });
  const [p] = await rt.api.waitForPosts(1);
  const global = ['/opt/nodejs/node20/node_modules', '/opt/nodejs/node_modules', '/var/task',
    '/tmp/.node_modules', '/tmp/.node_libraries', '/var/lang/lib/node'];
  assert.deepEqual(p.json.globalPaths, global);
  const root = fs.realpathSync(rt.root);
  const local = [];
  for (let dir = root; ; dir = path.dirname(dir)) {
    local.push(path.join(dir, 'node_modules'));
    if (dir === path.dirname(dir)) break;
  }
  assert.deepEqual(p.json.resolve, [...local, ...global]);
  assert.equal(p.json.execPath, process.execPath, 'process.execPath is left as it was');
});
