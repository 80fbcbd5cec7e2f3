// `npm run server`: the HTTP API alone, against DATABASE_URL.
import { runService } from '../lib/service.ts'

await runService({ api: true, worker: false })
