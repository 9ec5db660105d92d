'use strict';
/*
 * tern Node.js runtime bootstrap (Node 20).
 *
 * Implements the AWS Lambda nodejs runtime behaviour on top of the Lambda
 * Runtime API (2018-06-01). Dependency free: only Node built-in modules.
 *
 * Run as: node /opt/tern/node/bootstrap.js
 */

const http = require('http');
const path = require('path');
const fs = require('fs');
const util = require('util');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';

// ---------------------------------------------------------------------------
// Errors (same names/shape as Lambda's runtime errors)
// ---------------------------------------------------------------------------

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class MarshalError extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
for (const cls of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  MarshalError,
  UnhandledPromiseRejection,
]) {
  cls.prototype.name = `Runtime.${cls.name}`;
}

function isError(e) {
  return (
    util.types.isNativeError(e) ||
    (e !== null && typeof e === 'object' && typeof e.name === 'string' &&
      typeof e.message === 'string' && typeof e.stack === 'string')
  );
}

function sanitize(s) {
  return typeof s === 'string' ? s.replace(/\x7F/g, '%7F') : s;
}

/** Body posted to the Runtime API: {errorType, errorMessage, trace}. */
function toRapidResponse(error) {
  try {
    if (isError(error)) {
      return {
        errorType: sanitize(error.name) || 'Error',
        errorMessage: sanitize(error.message),
        trace: typeof error.stack === 'string' ? sanitize(error.stack).split('\n') : [],
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_e) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

function withEnumerableProperties(value) {
  if (value instanceof Error) {
    const ret = Object.assign(
      { errorType: value.name, errorMessage: value.message, code: value.code },
      value,
    );
    if (typeof value.stack === 'string') ret.stack = value.stack.split('\n');
    return ret;
  }
  return value;
}

/** Log representation used by Lambda ("\t{json}"). */
function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_k, v) => withEnumerableProperties(v));
  } catch (_e) {
    const r = toRapidResponse(error);
    return '\t' + JSON.stringify({ errorType: r.errorType, errorMessage: r.errorMessage, stack: r.trace });
  }
}

// ---------------------------------------------------------------------------
// Logging: console as Lambda's Node runtime patches it (aws-lambda-nodejs-runtime-
// interface-client's LogPatch.js), with LoggingConfig from the environment:
// AWS_LAMBDA_LOG_FORMAT (Text | JSON) and AWS_LAMBDA_LOG_LEVEL (ApplicationLogLevel).
// ---------------------------------------------------------------------------

let logRequestId; // last/current request id; "undefined" before the first invoke

const LOG_LEVELS = Object.freeze({
  TRACE: { name: 'TRACE', priority: 1 },
  DEBUG: { name: 'DEBUG', priority: 2 },
  INFO: { name: 'INFO', priority: 3 },
  WARN: { name: 'WARN', priority: 4 },
  ERROR: { name: 'ERROR', priority: 5 },
  FATAL: { name: 'FATAL', priority: 6 },
});

function jsonLogs() {
  return (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
}

function jsonErrorReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign(
      {
        errorType: (value.constructor && value.constructor.name) || 'UnknownError',
        errorMessage: value.message,
        stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
      },
      value,
    );
  }
  return value;
}

/** One JSON log line: {timestamp, level, requestId, message[, errorType, ...]}. */
function formatJsonMessage(timestamp, level, args) {
  const result = { timestamp, level, requestId: logRequestId };
  if (args.length === 1) {
    result.message = args[0];
    try {
      return JSON.stringify(result, jsonErrorReplacer);
    } catch (_e) {
      result.message = util.format(result.message);
      return JSON.stringify(result);
    }
  }
  result.message = util.format(...args);
  for (const param of args) {
    if (param instanceof Error) {
      result.errorType = (param.constructor && param.constructor.name) || 'UnknownError';
      result.errorMessage = param.message;
      result.stackTrace = typeof param.stack === 'string' ? param.stack.split('\n') : [];
      break;
    }
  }
  return JSON.stringify(result);
}

function formatLogLine(level, args) {
  const time = new Date().toISOString();
  const line = jsonLogs()
    ? formatJsonMessage(time, level, args)
    : `${time}\t${logRequestId}\t${level}\t${util.format(...args)}`;
  // Lambda keeps multi-line messages in a single log event.
  return line.replace(/\n/g, '\r') + '\n';
}

function patchConsole() {
  const threshold = LOG_LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LOG_LEVELS.TRACE;
  const nop = () => {};
  const make = (level) =>
    level.priority < threshold.priority
      ? nop
      : function () {
          process.stdout.write(formatLogLine(level.name, Array.from(arguments)));
        };
  console.trace = make(LOG_LEVELS.TRACE);
  console.debug = make(LOG_LEVELS.DEBUG);
  console.info = make(LOG_LEVELS.INFO);
  console.log = console.info;
  console.warn = make(LOG_LEVELS.WARN);
  console.error = make(LOG_LEVELS.ERROR);
  // FATAL is never filtered (as in Lambda's runtime).
  console.fatal = function () {
    process.stdout.write(formatLogLine('FATAL', Array.from(arguments)));
  };
}

/** Logs an invocation's or init's error the way Lambda's runtime does in each format. */
function logError(message, error) {
  if (jsonLogs()) console.error(isError(error) ? error : toRapidResponse(error));
  else console.error(message, toFormatted(error));
}

function logToStderr(level, args) {
  try {
    process.stderr.write(formatLogLine(level, args));
  } catch (_e) {
    /* ignore */
  }
}

// ---------------------------------------------------------------------------
// Runtime API client
// ---------------------------------------------------------------------------

function parseApiAddress(api) {
  if (!api) throw new Error('AWS_LAMBDA_RUNTIME_API is not set');
  const idx = api.lastIndexOf(':');
  let host = idx >= 0 ? api.slice(0, idx) : api;
  const port = idx >= 0 ? Number(api.slice(idx + 1)) : 80;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port };
}

let apiAddress;
const agent = new http.Agent({ keepAlive: true });

function apiRequest(method, urlPath, body, headers, retried, to = apiAddress) {
  return new Promise((resolve, reject) => {
    const h = Object.assign({}, headers);
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      h['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request(
      { host: to.host, port: to.port, path: urlPath, method, agent, headers: h },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', (err) => {
      // A kept-alive socket may have been closed by the server; retry once.
      if (req.reusedSocket && !retried && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        apiRequest(method, urlPath, body, headers, true, to).then(resolve, reject);
      } else {
        reject(err);
      }
    });
    req.end(body);
  });
}

function serializeResult(result) {
  const s = JSON.stringify(result === undefined ? null : result);
  return s === undefined ? 'null' : s;
}

function postInvocationResponse(id, result) {
  let body;
  try {
    body = serializeResult(result);
  } catch (_e) {
    return postInvocationError(id, new MarshalError('Unable to stringify response body'));
  }
  return apiRequest('POST', `${API_PREFIX}/invocation/${encodeURIComponent(id)}/response`, body);
}

function postInvocationError(id, error) {
  logError('Invoke Error', error);
  const body = JSON.stringify(toRapidResponse(error));
  return apiRequest('POST', `${API_PREFIX}/invocation/${encodeURIComponent(id)}/error`, body, {
    [ERROR_TYPE_HEADER]: 'Unhandled',
  });
}

function postInitError(error) {
  logToStderr('ERROR', ['Uncaught Exception', toFormatted(error)]);
  const response = toRapidResponse(error);
  return apiRequest('POST', `${API_PREFIX}/init/error`, JSON.stringify(response), {
    [ERROR_TYPE_HEADER]: response.errorType,
  });
}

// ---------------------------------------------------------------------------
// Handler loading (mirrors Lambda's UserFunction.js)
// ---------------------------------------------------------------------------

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_e) {
    return false;
  }
}

function tryRequireFile(file, ext) {
  const p = file + (ext || '');
  return isFile(p) ? require(p) : undefined;
}

async function tryAwaitImport(file, ext) {
  const p = file + (ext || '');
  return isFile(p) ? await import(pathToFileURL(p).href) : undefined;
}

function hasPackageJsonTypeModule(file) {
  let dir = path.dirname(file);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (isFile(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (_e) {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function tryRequire(appRoot, moduleRoot, moduleName) {
  const lambdaStylePath = path.resolve(appRoot, moduleRoot, moduleName);
  const extensionless = tryRequireFile(lambdaStylePath);
  if (extensionless) return extensionless;

  const pjHasModule = hasPackageJsonTypeModule(lambdaStylePath);
  if (!pjHasModule) {
    const loaded = tryRequireFile(lambdaStylePath, '.js');
    if (loaded) return loaded;
  }
  const loaded =
    (pjHasModule && (await tryAwaitImport(lambdaStylePath, '.js'))) ||
    (await tryAwaitImport(lambdaStylePath, '.mjs')) ||
    tryRequireFile(lambdaStylePath, '.cjs');
  if (loaded) return loaded;

  // Fall back to node-style resolution (e.g. node_modules), relative to the task root.
  const nodeStylePath = require.resolve(moduleName, {
    paths: [appRoot, path.resolve(appRoot, moduleRoot)],
  });
  return require(nodeStylePath);
}

async function loadHandler(appRoot, fullHandlerString) {
  if (fullHandlerString.includes('../')) {
    throw new MalformedHandlerName(
      "'../' is not a valid handler name. Use absolute paths when specifying root directories in handler names.",
    );
  }
  const handlerString = path.basename(fullHandlerString);
  const moduleRoot = fullHandlerString.substring(0, fullHandlerString.length - handlerString.length);
  const match = handlerString.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) throw new MalformedHandlerName('Bad handler');
  const moduleName = match[1];
  const handlerPath = match[2];

  let userApp;
  try {
    userApp = await tryRequire(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) {
      const err = new UserCodeSyntaxError(String(e));
      // Keep the original location info (file:line + caret) in the trace.
      if (typeof e.stack === 'string') err.stack = `${err.name}: ${err.message}\n${e.stack}`;
      throw err;
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(String(e));
    }
    throw e;
  }

  const handlerFunc = handlerPath
    .split('.')
    .reduce((obj, key) => (obj === undefined || obj === null ? undefined : obj[key]), userApp);
  if (!handlerFunc) throw new HandlerNotFound(`${fullHandlerString} is undefined or not exported`);
  if (typeof handlerFunc !== 'function') throw new HandlerNotFound(`${fullHandlerString} is not a function`);
  return handlerFunc;
}

// ---------------------------------------------------------------------------
// Invocation loop
// ---------------------------------------------------------------------------

let phase = 'init'; // 'init' | 'invoke'
let current = null; // { id, settled, posted }
let beforeExitListener = null;
let crashing = false;

process.on('beforeExit', () => {
  const l = beforeExitListener;
  beforeExitListener = null;
  if (l) l();
});

function isPromise(p) {
  return p !== null && (typeof p === 'object' || typeof p === 'function') && typeof p.then === 'function';
}

function parseJsonHeader(value) {
  if (value === undefined || value === '') return undefined;
  try {
    return JSON.parse(value);
  } catch (_e) {
    return undefined;
  }
}

function fatal(err) {
  logToStderr('ERROR', ['tern bootstrap: fatal error', err && err.stack ? err.stack : String(err)]);
  process.exit(1);
}

function scheduleNext(handler) {
  setImmediate(() => handleOnce(handler).catch(fatal));
}

// The current request's trace id, shown in process.env without setenv(3): glibc keeps
// every value setenv was ever given, so a new id per request through the real
// process.env would grow the runtime by ~140 bytes per invocation, without bound.
// Children spawned with the default environment still get it: Node builds their
// environment from the process.env object. (Worker threads and util.inspect see the
// real environment object, and structuredClone cannot copy a proxy: docs/api.md.)
const TRACE_KEY = '_X_AMZN_TRACE_ID';
let traceId;

function installTraceEnv() {
  const real = process.env;
  const mine = (k) => k === TRACE_KEY;
  process.env = new Proxy(real, {
    get: (t, k) => (mine(k) ? traceId : Reflect.get(t, k)),
    set: (t, k, v) => {
      if (!mine(k)) return Reflect.set(t, k, v);
      traceId = String(v);
      return true;
    },
    has: (t, k) => (mine(k) ? traceId !== undefined : Reflect.has(t, k)),
    deleteProperty: (t, k) => {
      if (!mine(k)) return Reflect.deleteProperty(t, k);
      traceId = undefined;
      return true;
    },
    ownKeys: (t) => {
      const keys = Reflect.ownKeys(t).filter((k) => !mine(k));
      if (traceId !== undefined) keys.push(TRACE_KEY);
      return keys;
    },
    getOwnPropertyDescriptor: (t, k) => {
      if (!mine(k)) return Reflect.getOwnPropertyDescriptor(t, k);
      if (traceId === undefined) return undefined;
      return { value: traceId, writable: true, enumerable: true, configurable: true };
    },
  });
}

async function handleOnce(handler) {
  const next = await apiRequest('GET', `${API_PREFIX}/invocation/next`);
  if (next.status < 200 || next.status > 299) {
    throw new Error(`runtime API returned ${next.status} for invocation/next: ${next.body}`);
  }
  const h = next.headers;
  const id = h['lambda-runtime-aws-request-id'];
  if (!id) throw new Error('invocation/next response is missing lambda-runtime-aws-request-id');

  const inv = { id, settled: false, posted: false };
  current = inv;
  logRequestId = id;
  phase = 'invoke';
  traceId = h['lambda-runtime-trace-id'] || undefined;

  const deadline = Number(h['lambda-runtime-deadline-ms']);
  const env = process.env;

  const post = (isError, value) => {
    if (inv.posted) return;
    inv.posted = true;
    beforeExitListener = null;
    const p = isError ? postInvocationError(id, value) : postInvocationResponse(id, value);
    // Non-2xx (e.g. 413 payload too large) is reported by the API itself; keep looping.
    p.then(
      () => {
        if (current === inv) current = null;
        scheduleNext(handler);
      },
      fatal,
    );
  };

  // Immediate completion (promise resolution, context.done/succeed/fail).
  const done = (err, result) => {
    if (inv.settled) return;
    inv.settled = true;
    if (err !== undefined && err !== null) post(true, err);
    else post(false, result);
  };

  const context = {
    callbackWaitsForEmptyEventLoop: true,
    succeed: (result) => done(null, result),
    fail: (err) => done(err === undefined || err === null ? 'handled' : err),
    done,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(h['lambda-runtime-client-context']),
    identity: parseJsonHeader(h['lambda-runtime-cognito-identity']),
    invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };

  // Node-style callback; waits for the event loop to drain when asked to.
  const callback = (err, result) => {
    if (inv.settled) return;
    if (err !== undefined && err !== null) return done(err);
    inv.settled = true;
    if (!context.callbackWaitsForEmptyEventLoop) return post(false, result);
    beforeExitListener = () => setImmediate(() => post(false, result));
  };

  // If nothing completes the invocation and the event loop drains, answer null.
  beforeExitListener = () => done(null, null);

  try {
    const event = JSON.parse(next.body);
    const result = handler(event, context, callback);
    if (isPromise(result)) {
      Promise.resolve(result).then(
        (value) => done(null, value),
        (err) => done(err === undefined || err === null ? 'handled' : err),
      );
    } else if (handler.length < 3 && result !== undefined) {
      done(null, result);
    }
  } catch (err) {
    callback(err === undefined || err === null ? 'handled' : err);
  }
}

function crash(err, exitCode) {
  if (crashing) return;
  crashing = true;
  const exit = () => process.exit(exitCode);
  // Never hang on the way out.
  setTimeout(exit, 2000).unref();
  let p;
  if (phase === 'init') {
    p = postInitError(err);
  } else if (current && !current.posted) {
    current.posted = true;
    p = apiRequest('POST', `${API_PREFIX}/invocation/${encodeURIComponent(current.id)}/error`,
      JSON.stringify(toRapidResponse(err)), { [ERROR_TYPE_HEADER]: 'Unhandled' });
  }
  if (p) p.then(exit, exit);
  else exit();
}

process.on('uncaughtException', (err) => {
  if (phase !== 'init') logError('Uncaught Exception', err);
  crash(err, 1);
});

process.on('unhandledRejection', (reason, promise) => {
  let msg;
  try {
    msg = reason === undefined || reason === null ? undefined : reason.toString();
  } catch (_e) {
    msg = undefined;
  }
  const err = new UnhandledPromiseRejection(msg, promise);
  if (phase !== 'init') logError('Unhandled Promise Rejection', err);
  crash(err, 1);
});

// Module resolution as on Lambda: NODE_PATH's entries (layers' /opt/nodejs, the code),
// then $HOME's, then the runtime's own `<prefix>/lib/node`. That last one is derived
// from process.execPath, a host interpreter's prefix (/usr/lib/node), so the paths are
// rebuilt as if node lived under Lambda's /var/lang: no host directory is searched.
const LAMBDA_NODE_EXEC_PATH = '/var/lang/bin/node';

function isolateModulePaths() {
  const Module = require('module');
  const execPath = process.execPath;
  try {
    process.execPath = LAMBDA_NODE_EXEC_PATH;
    Module._initPaths();
  } finally {
    process.execPath = execPath;
  }
}

// A runtime started ahead of its instance warms up while it waits: a GET and a POST
// through apiRequest to a throwaway server on loopback, so that the first requests to
// the Runtime API do not pay for loading and compiling Node's HTTP client (several ms
// of CPU). Leaves nothing behind.
async function warmUpAhead() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"warm":true}');
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const to = { host: '127.0.0.1', port: server.address().port };
    JSON.parse((await apiRequest('GET', `${API_PREFIX}/invocation/next`, undefined, {}, false, to)).body);
    await apiRequest('POST', `${API_PREFIX}/invocation/warm/response`, serializeResult({ warm: true }), {}, false, to);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

// A runtime started ahead of its instance (tern extension): block until the platform
// writes the instance's configuration on the descriptor TERN_CONFIG_FD names, one line
// of JSON, and adopt it: `{"env": {...}}`, the instance's complete environment, which
// replaces the one this process started with. The platform closes the descriptor once
// the function's code is in place (see awaitCode).
function readConfig(fd) {
  const chunks = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    if (buf[n - 1] === 0x0a) break;
  }
  const env = JSON.parse(Buffer.concat(chunks).toString('utf8')).env || {};
  for (const key of Object.keys(process.env)) {
    if (!Object.prototype.hasOwnProperty.call(env, key)) delete process.env[key];
  }
  Object.assign(process.env, env);
}

// Waits until the platform closes the config descriptor: the function's code is mounted
// (after this process started, over the directory it started in), so enter it.
function awaitCode(fd) {
  try {
    fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  process.chdir(process.env.LAMBDA_TASK_ROOT || process.cwd());
}

async function main() {
  const configFd = process.env.TERN_CONFIG_FD;
  if (configFd !== undefined) {
    try {
      await warmUpAhead();
    } catch (_e) {
      /* warming up is an optimisation */
    }
  }
  const fd = configFd === undefined ? undefined : Number.parseInt(configFd, 10);
  try {
    if (fd !== undefined) readConfig(fd);
    apiAddress = parseApiAddress(process.env.AWS_LAMBDA_RUNTIME_API);
  } catch (e) {
    fatal(e);
    return;
  }
  isolateModulePaths();
  patchConsole();
  installTraceEnv();
  if (fd !== undefined) {
    // What depends only on the environment is done: the code is mounted meanwhile.
    try {
      awaitCode(fd);
    } catch (e) {
      fatal(e);
      return;
    }
  }

  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const handlerSpec = process.env._HANDLER || '';
  let handler;
  try {
    handler = await loadHandler(appRoot, handlerSpec);
  } catch (e) {
    crashing = true;
    try {
      await postInitError(e);
    } catch (_e) {
      /* API unreachable: nothing more we can do */
    }
    process.exit(1);
    return;
  }
  scheduleNext(handler);
}

main();
