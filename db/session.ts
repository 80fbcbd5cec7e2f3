// The settings live with the driver's other session settings (docs/decisions/0010-postgres-js-or-pg.md).
export { SERVICE_SESSION_SETTINGS } from './driver/session.ts'
