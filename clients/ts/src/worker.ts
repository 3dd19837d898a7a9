/**
 * The SharedWorker side of {@link SharedConnection}: call `startWorkerHub()`
 * in the worker script; every tab that connects shares its one Connection.
 */
import { Hub, type HubMessage, type TabMessage } from "./hub.js";

interface WorkerScope {
  onconnect: ((event: MessageEvent) => void) | null;
  navigator: Navigator;
}

export function startWorkerHub(scope: WorkerScope = globalThis as unknown as WorkerScope): Hub {
  const hub = new Hub();
  const watched = new Set<string>();
  scope.onconnect = (event: MessageEvent) => {
    const port = event.ports[0];
    if (port === undefined) return;
    port.onmessage = (message: MessageEvent<TabMessage>) => {
      const data = message.data;
      if (data.t === "hello" && !watched.has(data.tab)) {
        watched.add(data.tab);
        // Granted only once the tab has gone (it holds the lock for its life).
        void scope.navigator.locks?.request(`hubbub-tab:${data.tab}`, () => {
          watched.delete(data.tab);
          hub.drop(data.tab);
          if (hub.tabs === 0) hub.close();
        });
      }
      hub.receive(data, (answer: HubMessage) => port.postMessage(answer));
    };
    port.start();
  };
  return hub;
}
