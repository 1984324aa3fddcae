// Paging through a list the server pages by cursor: forward with the
// page's next_cursor, back through the cursors of the pages seen.
import { ref, type Ref } from 'vue'
import { failed } from './api/client'

export interface Page<T> {
  data?: { items?: T[]; next_cursor?: string }
  error?: unknown
}

export function usePager<T>(fetchPage: (cursor: string) => Promise<Page<T>>) {
  const rows = ref([]) as Ref<T[]>
  const busy = ref(false)
  const next = ref('')
  const back = ref<string[]>([]) // the cursors of the pages before this one
  let current = ''

  async function load(cursor: string) {
    busy.value = true
    try {
      const { data, error } = await fetchPage(cursor)
      failed(error)
      rows.value = data?.items ?? []
      next.value = data?.next_cursor ?? ''
      current = cursor
    } finally {
      busy.value = false
    }
  }
  return {
    rows, busy, next, back,
    // first loads the first page (a new search).
    first: () => {
      back.value = []
      return load('')
    },
    forward: () => {
      back.value.push(current)
      return load(next.value)
    },
    backward: () => load(back.value.pop() ?? ''),
  }
}
