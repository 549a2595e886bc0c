// Placeholder until the designer page lands (issue 13, built in parallel).
import { h } from '../../dom.js';

export default {
  mount(el) {
    el.append(h('p.page-message', 'designer'));
    return { unmount() {} };
  },
};
