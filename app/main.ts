// `npm start`: the API and the worker in one process, on the embedded database unless DATABASE_URL is set.
import { runService } from './service.ts'

await runService({ api: true, worker: true })
