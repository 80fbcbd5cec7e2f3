import pino, { type Logger } from 'pino'

/**
 * pino JSON logs; human-readable when a person is watching the terminal. `destination` (a stream)
 * replaces stdout, for tests.
 */
export function createLogger ({ LOG_LEVEL }: { LOG_LEVEL: string },
  { pretty = process.stdout.isTTY, destination }: { pretty?: boolean, destination?: pino.DestinationStream } = {}): Logger {
  const options: pino.LoggerOptions = {
    level: LOG_LEVEL,
    base: { service: 'boxoffice' },
    redact: { paths: ['req.headers.authorization', 'config.ADMIN_TOKEN', 'config.DATABASE_URL'], censor: '[redacted]' },
    // Request lines without their query string: a booking's ?user_id= is what proves its owner, so
    // whoever reads the logs must not find it there.
    serializers: {
      req: (req: { method: string, url: string, host?: string, ip?: string, socket?: { remotePort?: number } }) =>
        ({ method: req.method, url: req.url.split('?', 1)[0], host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort })
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } } : {})
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}
