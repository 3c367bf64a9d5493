/** The lineage graph's layout, computed in a worker (layout.worker.ts). */

export interface LayoutRequest {
  nodes: string[];
  // [input, output] per edge; parallel edges (several jobs) are kept.
  edges: [string, string][];
  nodeSize: number;
}

/** Positions, in the order of the request's nodes. */
export interface LayoutAnswer {
  x: Float64Array;
  y: Float64Array;
}

/** Lays the graph out off the page's thread; aborting ends the worker (a newer graph is on its way). */
export function layOut(request: LayoutRequest, signal: AbortSignal): Promise<LayoutAnswer> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./layout.worker.ts", import.meta.url), { type: "module" });
    const end = () => worker.terminate();
    signal.addEventListener("abort", () => {
      end();
      reject(signal.reason);
    });
    worker.onmessage = (event: MessageEvent<LayoutAnswer>) => {
      end();
      resolve(event.data);
    };
    worker.onerror = (event) => {
      end();
      reject(new Error(`the graph's layout failed: ${event.message}`));
    };
    worker.postMessage(request);
  });
}
