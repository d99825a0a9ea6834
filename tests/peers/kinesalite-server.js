// Starts kinesalite on 127.0.0.1 only (its CLI binds every interface) and prints the port.
// Usage: node kinesalite-server.js [PORT] [PATH]   (0 or nothing: a free port; PATH: LevelDB on disk,
// so a stopped and restarted server keeps its streams and records)
'use strict'
const kinesalite = require('kinesalite')
const port = parseInt(process.argv[2] || '0', 10)
const options = { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100000 }
if (process.argv[3]) options.path = process.argv[3]
const server = kinesalite(options)
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
