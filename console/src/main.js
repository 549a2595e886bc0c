// The console's shell: log-in, the top bar (pages this person may use, language, log-out) and
// a hash router (#/<page>/<rest>?<query>) that mounts one page at a time.
import './style.css';
import { api, ApiError, keepFresh, setToken, setUnauthorizedHandler, token } from './api.js';
import { clear, h, toast } from './dom.js';
import { lang, onLang, register, setLang, setZone, t } from './i18n.js';
import { PAGES } from './pages.js';

register({
  'app.name': { zh: '城市运行 · 一网统管', en: 'cityloop · city operations' },
  'login.title': { zh: '登录', en: 'Log in' },
  'login.username': { zh: '账号', en: 'Username' },
  'login.password': { zh: '密码', en: 'Password' },
  'login.submit': { zh: '登录', en: 'Log in' },
  'login.busy': { zh: '正在登录…', en: 'Logging in…' },
  'login.failed': { zh: '账号或密码不正确', en: 'Wrong username or password' },
  'login.locked': { zh: '尝试次数过多，请稍后再试', en: 'Too many attempts; try again later' },
  'login.overloaded': { zh: '服务器繁忙，请几秒后重试', en: 'The server is busy; try again in a few seconds' },
  'login.unreachable': { zh: '无法连接服务器', en: 'Cannot reach the server' },
  'login.expired': { zh: '登录已过期，请重新登录', en: 'Your session has ended; please log in again' },
  'shell.logout': { zh: '退出', en: 'Log out' },
  'shell.lang': { zh: 'English', en: '中文' },
  'shell.lang_title': { zh: '切换到英文', en: 'Switch to Chinese' },
  'shell.no_pages': { zh: '您的角色没有可用的控制台页面。', en: 'Your role has no console pages.' },
  'shell.no_access': { zh: '您无权使用此页面。', en: 'You may not use this page.' },
  'shell.not_found': { zh: '没有这个页面。', en: 'There is no such page.' },
  'shell.loading': { zh: '加载中…', en: 'Loading…' },
  'shell.load_failed': { zh: '页面加载失败：{message}', en: 'The page failed to load: {message}' },
  'role.admin': { zh: '管理员', en: 'Administrator' },
  'role.designer': { zh: '流程设计', en: 'Process designer' },
  'role.dispatcher': { zh: '派单员', en: 'Dispatcher' },
  'role.reviewer': { zh: '审核员', en: 'Reviewer' },
  'role.unit_worker': { zh: '责任单位人员', en: 'Unit worker' },
  'role.unit_leader': { zh: '责任单位负责人', en: 'Unit leader' },
  'role.deliverer': { zh: '送气工', en: 'Gas deliverer' },
  'role.supervisor': { zh: '保洁主管', en: 'Cleaning supervisor' },
});

const root = document.getElementById('app');
const state = { me: null, config: null, page: null, instance: null, mounting: 0 };

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || '', rest: parts.slice(1), query: Object.fromEntries(new URLSearchParams(queryPart)) };
}

export function navigate(hash, { replace = false } = {}) {
  const target = hash.startsWith('#') ? hash : `#${hash}`;
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  route();
}

function allowedPages() {
  return PAGES.filter((p) => p.needs(state.me));
}

// ---- log-in -------------------------------------------------------------------------------
function showLogin(notice) {
  unmountPage();
  clear(root);
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, maxlength: 64 });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 256 });
  const error = h('p.form-error', { id: 'login-error', role: 'alert' }, notice || '');
  const submit = h('button.primary', { type: 'submit', id: 'login-submit' }, t('login.submit'));
  const form = h('form.login-card', { id: 'login-form' },
    h('h1', t('app.name')),
    h('h2', t('login.title')),
    h('label', t('login.username'), user),
    h('label', t('login.password'), pass),
    error,
    submit,
    h('button.link', { type: 'button', id: 'lang-toggle', onclick: () => {
      const typed = user.value; // keep what was typed (never the password) across the switch
      setLang(lang() === 'zh' ? 'en' : 'zh');
      showLogin();
      document.getElementById('login-username').value = typed;
    } }, t('shell.lang')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    submit.textContent = t('login.busy');
    error.textContent = '';
    try {
      const out = await api.post('/api/v1/auth/login', { username: user.value.trim(), password: pass.value });
      setToken(out.access_token, out.expires_in);
      await start();
    } catch (err) {
      error.textContent = loginMessage(err);
      submit.disabled = false;
      submit.textContent = t('login.submit');
      pass.select();
    }
  });
  root.append(h('div.login-page', form));
  user.focus();
}

function loginMessage(err) {
  if (!(err instanceof ApiError)) return String(err);
  if (err.status === 0) return t('login.unreachable');
  if (err.status === 429) return `${t('login.locked')} (${err.message})`;
  if (err.status === 503) return t('login.overloaded');
  if (err.status === 401 || err.status === 422) return t('login.failed');
  return err.message;
}

function logout() {
  setToken(null);
  state.me = null;
  history.replaceState(null, '', '#/');
  showLogin();
}

// ---- the shell --------------------------------------------------------------------------------
function renderShell() {
  clear(root);
  const nav = h('nav.pages', { 'aria-label': 'pages' },
    allowedPages().map((p) => h('a', { href: `#/${p.id}`, id: `nav-${p.id}`, dataset: { page: p.id } }, p.label[lang()])));
  const who = h('span.who', { id: 'whoami', title: state.me.id },
    `${state.me.id} · ${t(`role.${state.me.role}`)}${state.me.unit_code ? ` · ${state.me.unit_code}` : ''}`);
  const top = h('header.topbar',
    h('a.brand', { href: '#/' }, t('app.name')),
    nav,
    h('div.spacer'),
    who,
    h('button.link', { id: 'lang-toggle', title: t('shell.lang_title'), onclick: () => setLang(lang() === 'zh' ? 'en' : 'zh') }, t('shell.lang')),
    h('button.link', { id: 'logout', onclick: logout }, t('shell.logout')));
  const main = h('main', { id: 'page' });
  root.append(top, main);
  markNav();
}

function markNav() {
  for (const a of root.querySelectorAll('nav.pages a')) {
    a.classList.toggle('active', state.page && a.dataset.page === state.page.id);
    if (state.page && a.dataset.page === state.page.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function unmountPage() {
  if (state.instance && state.instance.unmount) {
    try {
      state.instance.unmount();
    } catch (err) {
      console.error('unmount failed', err);
    }
  }
  state.instance = null;
  state.page = null;
}

function message(text) {
  const main = document.getElementById('page');
  clear(main).append(h('p.page-message', text));
}

async function route() {
  if (!state.me) return;
  const r = parseHash();
  const pages = allowedPages();
  if (!r.page) {
    if (pages.length) navigate(`#/${pages[0].id}`, { replace: true });
    else {
      unmountPage();
      message(t('shell.no_pages'));
    }
    return;
  }
  const page = PAGES.find((p) => p.id === r.page);
  if (!page || !page.needs(state.me)) {
    unmountPage();
    markNav();
    message(t(page ? 'shell.no_access' : 'shell.not_found'));
    return;
  }
  const ctx = context(r);
  if (state.page === page && state.instance) {
    if (state.instance.route) {
      state.instance.route(ctx.route);
      return;
    }
  }
  unmountPage();
  state.page = page;
  markNav();
  const ticket = ++state.mounting;
  message(t('shell.loading'));
  let module;
  try {
    module = await page.load();
  } catch (err) {
    console.error(err);
    message(t('shell.load_failed', { message: err.message }));
    return;
  }
  if (ticket !== state.mounting) return; // another navigation won
  const main = document.getElementById('page');
  clear(main);
  main.dataset.page = page.id;
  state.instance = module.default.mount(main, ctx) || {};
}

function context(r) {
  return {
    api,
    t,
    me: state.me,
    config: state.config,
    route: r,
    navigate,
    toast,
  };
}

onLang(() => {
  if (!state.me) return;
  const instance = state.instance;
  renderShellKeepingPage();
  if (instance && instance.relabel) instance.relabel();
  else if (state.page) {
    unmountPage();
    route();
  }
});

// Re-draw the top bar in the new language without unmounting the page.
function renderShellKeepingPage() {
  const main = document.getElementById('page');
  if (!main) return renderShell();
  main.remove();
  renderShell();
  document.getElementById('page').replaceWith(main);
  markNav();
}

setUnauthorizedHandler(() => {
  setToken(null);
  state.me = null;
  showLogin(t('login.expired'));
});

async function start() {
  try {
    const [me, config] = await Promise.all([api.get('/api/v1/auth/me'), api.get('/api/v1/console/config')]);
    state.me = me;
    state.config = config;
    if (config.timezone) setZone(config.timezone);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the handler shows the log-in
    showLogin(err.message);
    return;
  }
  renderShell();
  route();
}

window.addEventListener('hashchange', route);
if (token()) {
  keepFresh();
  start();
}
else showLogin();
