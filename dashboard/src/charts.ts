// ECharts, only the parts the views use (tree-shaken: line, scatter, heatmap, bar).
import { BarChart, HeatmapChart, LineChart, ScatterChart } from "echarts/charts";
import {
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  MarkPointComponent,
  TitleComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";

import { h } from "./dom";

echarts.use([BarChart, HeatmapChart, LineChart, ScatterChart, DataZoomComponent, GridComponent,
  LegendComponent, MarkLineComponent, MarkPointComponent, TitleComponent, TooltipComponent,
  VisualMapComponent, CanvasRenderer]);

export type Option = echarts.EChartsCoreOption;

const live = new Set<echarts.ECharts>();

export function dark(): boolean {
  return document.documentElement.dataset.theme === "dark";
}

export function palette(): { fg: string; muted: string; grid: string; accent: string; bad: string;
                             good: string } {
  return dark()
    ? { fg: "#e6e6e6", muted: "#9aa4b2", grid: "#333a44", accent: "#5aa9ff", bad: "#ff6b6b",
        good: "#4cd38a" }
    : { fg: "#1d2330", muted: "#5b6576", grid: "#e3e7ee", accent: "#1f6feb", bad: "#d1242f",
        good: "#1a7f37" };
}

/** A chart in a new box (with an accessible label); disposed at the next navigation. */
export function chart(label: string, option: Option, height = 320): HTMLElement {
  const box = h("div", { class: "chart", role: "img", "aria-label": label,
                         style: `height:${height}px` });
  // the box has no size until it is in the document: render on the next frame
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    const c = echarts.init(box, dark() ? "dark" : undefined, { renderer: "canvas" });
    c.setOption({ backgroundColor: "transparent", animation: false, textStyle: {
      fontFamily: "inherit" }, ...option });
    live.add(c);
    const ro = new ResizeObserver(() => c.resize());
    ro.observe(box);
    (box as any)._chart = c;
  });
  return box;
}

/** Tooltip formatters return HTML: every stored string in one goes through this. */
export function esc(x: unknown): string {
  return String(x).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function disposeCharts(): void {
  for (const c of live) c.dispose();
  live.clear();
}

export function axis(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const p = palette();
  return { name, nameLocation: "middle", nameGap: 30, scale: true,
           axisLine: { lineStyle: { color: p.muted } },
           splitLine: { lineStyle: { color: p.grid } }, ...extra };
}
