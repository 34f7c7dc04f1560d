/**
 * Line charts as PNG for the benchmarks' docs: drawn by ECharts (server-side
 * SVG, no browser) and rasterised by resvg, so a chart in docs/ is made from a
 * run's figures, never by hand.
 */
import { writeFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import * as echarts from 'echarts';

export interface Panel {
  title: string;
  unit: string;
  series: Array<{ name: string; values: number[] }>;
}

/** Panels side by side in a 2-column grid, all over the same x categories. */
export function renderPanels(
  file: string,
  title: string,
  x: { name: string; values: string[] },
  panels: Panel[],
): void {
  const columns = 2;
  const rows = Math.ceil(panels.length / columns);
  const width = 1200;
  const height = 120 + rows * 340;
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  const cell = (i: number) => ({
    left: `${6 + (i % columns) * 50}%`,
    width: '38%',
    top: 110 + Math.floor(i / columns) * 340,
    height: 230,
  });
  chart.setOption({
    animation: false,
    backgroundColor: '#ffffff',
    title: [
      { text: title, left: 'center', top: 10, textStyle: { fontSize: 20 } },
      ...panels.map((p, i) => ({
        text: `${p.title} (${p.unit})`,
        left: cell(i).left,
        top: (cell(i).top as number) - 40,
        textStyle: { fontSize: 14 },
      })),
    ],
    legend: panels.map((p, i) => ({
      data: p.series.map((s) => s.name),
      left: `${Number.parseFloat(cell(i).left) + 20}%`,
      top: (cell(i).top as number) - 22,
    })),
    grid: panels.map((_, i) => cell(i)),
    xAxis: panels.map((_, i) => ({
      type: 'category',
      data: x.values,
      gridIndex: i,
      name: x.name,
      nameLocation: 'middle',
      nameGap: 28,
    })),
    yAxis: panels.map((_, i) => ({ type: 'value', gridIndex: i })),
    series: panels.flatMap((p, i) =>
      p.series.map((s) => ({
        name: s.name,
        type: 'line',
        xAxisIndex: i,
        yAxisIndex: i,
        data: s.values.map((v) => (Number.isFinite(v) ? Number(v.toFixed(3)) : null)),
        label: { show: true, fontSize: 10 },
      })),
    ),
  });
  const svg = chart.renderToSVGString();
  chart.dispose();
  const png = new Resvg(svg, { font: { loadSystemFonts: true }, fitTo: { mode: 'width', value: width } })
    .render()
    .asPng();
  writeFileSync(file, png);
}
