// Module resolution for lint_corpus.mjs: bare imports resolve in console/node_modules (where
// `npm ci` put them), and bpmnlint's extension-less rule paths (which vite resolves) get ".js".
const CONSOLE = new URL('../../console/package.json', import.meta.url).href;

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    for (const candidate of [specifier, `${specifier}.js`]) {
      try {
        return await next(candidate, { ...context, parentURL: CONSOLE });
      } catch {
        // try the next form
      }
    }
    throw err;
  }
}
