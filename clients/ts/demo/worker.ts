/** The demo's SharedWorker: every tab of the page shares its one stream. */
import { startWorkerHub } from "../src/worker.js";

startWorkerHub();
