// `npm run worker`: the purchase worker alone, against DATABASE_URL.
import { runService } from '../lib/service.ts'

await runService({ api: false, worker: true })
