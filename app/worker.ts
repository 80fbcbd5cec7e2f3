// `npm run worker`: the purchase worker alone, against DATABASE_URL.
import { runService } from './service.ts'

await runService({ api: false, worker: true })
