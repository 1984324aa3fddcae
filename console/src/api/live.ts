// The doctors' live stream (/api/admin/conversations/stream, server-sent
// events). EventSource cannot send the Authorization header, so the stream
// is read through fetch. A dropped stream reconnects by itself (1 s, then
// up to 10 s apart) and asks the page to resync, since events sent while it
// was away are gone.
import type { components } from './schema'
import { session } from '../session'

export type ChatEvent = components['schemas']['ChatEvent']

export interface LiveHandlers {
  event(ev: ChatEvent): void
  // resync: reload what is shown (after a reconnect or when the server says
  // this client fell behind).
  resync(): void
  // state: whether the stream is connected, for the page to show.
  state?(connected: boolean): void
}

// connectLive opens the stream and keeps it open until the returned stop is
// called.
export function connectLive(h: LiveHandlers): () => void {
  let stopped = false
  let ctrl: AbortController | null = null
  let wait = 1000
  let everConnected = false

  async function run() {
    while (!stopped) {
      ctrl = new AbortController()
      try {
        const res = await fetch('/api/admin/conversations/stream', {
          headers: { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' },
          signal: ctrl.signal,
        })
        if (res.status === 401) {
          session.clear()
          location.assign('/login')
          return
        }
        if (!res.ok || !res.body) throw new Error(`stream: ${res.status}`)
        h.state?.(true)
        if (everConnected) h.resync() // what happened while away
        everConnected = true
        wait = 1000
        await read(res.body)
      } catch {
        /* dropped: reconnect below */
      }
      h.state?.(false)
      if (stopped) return
      await new Promise((r) => setTimeout(r, wait))
      wait = Math.min(wait * 2, 10000)
    }
  }

  async function read(body: ReadableStream<Uint8Array>) {
    const reader = body.getReader()
    const text = new TextDecoder()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buf += text.decode(value, { stream: true })
      let cut: number
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        dispatch(buf.slice(0, cut))
        buf = buf.slice(cut + 2)
      }
    }
  }

  function dispatch(block: string) {
    let name = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue // a comment: connected, keep-alive
      if (line.startsWith('event:')) name = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
    }
    if (name === 'chat' && data.length) {
      try {
        h.event(JSON.parse(data.join('\n')) as ChatEvent)
      } catch {
        h.resync()
      }
    } else if (name === 'resync') h.resync()
    else if (name === 'unauthorized') {
      stopped = true
      session.clear()
      location.assign('/login')
    }
  }

  void run()
  return () => {
    stopped = true
    ctrl?.abort()
  }
}
