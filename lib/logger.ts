import pino, { type Logger } from 'pino'

/** pino JSON logs; human-readable when a person is watching the terminal. */
export function createLogger ({ LOG_LEVEL }: { LOG_LEVEL: string }, { pretty = process.stdout.isTTY } = {}): Logger {
  return pino({
    level: LOG_LEVEL,
    base: { service: 'boxoffice' },
    redact: { paths: ['req.headers.authorization', 'config.ADMIN_TOKEN', 'config.DATABASE_URL'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } } : {})
  })
}
