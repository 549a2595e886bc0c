// ECharts, lean: only the bar and line charts with grid, tooltip and legend on the canvas renderer.
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([BarChart, LineChart, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer]);

// A chart in `el` that can be redrawn (new labels, new data) and resized; dispose() when done.
export function chart(el) {
  const c = echarts.init(el, null, { renderer: 'canvas' });
  return {
    draw(option) {
      c.setOption({ animation: false, tooltip: { trigger: 'axis' }, grid: { left: 48, right: 48, top: 36, bottom: 48 },
        ...option }, { notMerge: true });
    },
    resize: () => c.resize(),
    dispose: () => c.dispose(),
  };
}

// Bar chart: one series per entry of `series` ({name, values, stack?}) over the `labels` axis.
export function bars(labels, series, { yName = '', rotate = 0 } = {}) {
  return {
    legend: { top: 0 },
    xAxis: { type: 'category', data: labels, axisLabel: { rotate, interval: 0 } },
    yAxis: { type: 'value', name: yName },
    series: series.map((s) => ({ type: 'bar', barMaxWidth: 48, name: s.name, data: s.values, stack: s.stack })),
  };
}
