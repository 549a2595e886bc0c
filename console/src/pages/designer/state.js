// What the page learns from the server and the editors' checks and pickers use: the
// registered operations, the deployed forms and decisions. (A module of its own so that the
// page's own chunk stays small: the editors load when first opened.)
export const known = { operations: new Set(), forms: new Set(), decisions: new Set(), processes: new Set() };

// for the properties panel's pickers: [{name, description, parameters}], [form ids], [decision ids]
export const choices = { operations: [], forms: [], decisions: [] };
