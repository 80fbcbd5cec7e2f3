// `npm run server`: the HTTP API alone, against DATABASE_URL.
import { runService } from './service.ts'

await runService({ api: true, worker: false })
