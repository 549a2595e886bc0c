// Chinese and English. Every page registers its own strings: register({key: {zh, en}}).
// t('key', {n: 3}) fills {n}; a missing key shows itself (and warns once), never breaks a page.
const STORE_KEY = 'cityloop.lang';
const strings = new Map();
const listeners = new Set();
const warned = new Set();
let current = (() => {
  const saved = localStorage.getItem(STORE_KEY);
  if (saved === 'zh' || saved === 'en') return saved;
  return (navigator.language || 'zh').toLowerCase().startsWith('zh') ? 'zh' : 'en';
})();

export function register(table) {
  for (const [key, value] of Object.entries(table)) strings.set(key, value);
}

export function lang() {
  return current;
}

export function setLang(next) {
  if (next !== 'zh' && next !== 'en') throw new Error(`unknown language ${next}`);
  if (next === current) return;
  current = next;
  localStorage.setItem(STORE_KEY, next);
  document.documentElement.lang = next === 'zh' ? 'zh-CN' : 'en';
  for (const fn of [...listeners]) fn(next);
}

// fn(lang) after each switch; returns the unsubscribe function.
export function onLang(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function t(key, vars) {
  const entry = strings.get(key);
  let text;
  if (entry === undefined) {
    if (!warned.has(key)) {
      warned.add(key);
      console.warn(`i18n: no text for ${key}`);
    }
    text = key;
  } else {
    text = entry[current] ?? entry.en ?? key;
  }
  if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return text;
}

// A {zh, en} pair from the server (e.g. a unit's name and name_zh) in the current language.
export function pick(zh, en) {
  return current === 'zh' ? zh || en || '' : en || zh || '';
}

const locales = { zh: 'zh-CN', en: 'en-GB' };
export function locale() {
  return locales[current];
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n);
}

export function fmtPercent(rate, digits = 1) {
  if (rate === null || rate === undefined) return '–';
  return `${fmtNumber(rate * 100, digits)}%`;
}

// Times are shown in the district's zone (the server's CITYLOOP_TIMEZONE, from /console/config).
let zone = 'Asia/Shanghai';
export function setZone(name) {
  zone = name;
}
export function fmtTime(iso, withDate = true) {
  if (!iso) return '–';
  const d = new Date(iso);
  const opts = withDate
    ? { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false, timeZone: zone }
    : { hour: '2-digit', minute: '2-digit', hour12: false, timeZone: zone };
  return new Intl.DateTimeFormat(locale(), opts).format(d);
}

document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
