// Figures as shown on the page: up to two decimals (the API rounds hours to 2 and rates to 4),
// grouped per the console's language.
import { locale } from '../../i18n.js';

export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 2 }).format(n);
}

export function pct(rate) {
  if (rate === null || rate === undefined) return '–';
  return `${num(Math.round(rate * 10000) / 100)}%`;
}

// District-local date (YYYY-MM-DD) of `d` in the zone `tz`, plus `days`.
export function localDate(tz, days = 0, d = new Date()) {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(d);
  const base = new Date(`${parts}T00:00:00Z`);
  base.setUTCDate(base.getUTCDate() + days);
  return base.toISOString().slice(0, 10);
}
