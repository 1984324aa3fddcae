import { reactive } from 'vue'

export type Role = 'admin' | 'marketing' | 'doctor' | 'frontdesk'

export interface StaffMember {
  id?: number
  username?: string
  name?: string
  role?: Role
  actions?: string[] // what the server's role table lets this member do
}

const KEY = 'careloop.session'

// session is the signed-in staff member. The token lives in sessionStorage:
// it ends with the tab.
export const session = reactive({
  token: '' as string,
  staff: null as StaffMember | null,
  load() {
    try {
      const v = JSON.parse(sessionStorage.getItem(KEY) ?? 'null')
      if (v?.token) {
        this.token = v.token
        this.staff = v.staff
      }
    } catch {
      /* nothing stored */
    }
  },
  save(token: string, staff: StaffMember | null) {
    this.token = token
    this.staff = staff
    sessionStorage.setItem(KEY, JSON.stringify({ token, staff }))
  },
  clear() {
    this.token = ''
    this.staff = null
    sessionStorage.removeItem(KEY)
  },
})

// roleName names a role in Chinese.
export const roleName: Record<Role, string> = {
  admin: '管理员',
  marketing: '市场运营',
  doctor: '医生',
  frontdesk: '前台',
}

// may reports whether the signed-in member's role may do action (the
// server's role table, from /api/admin/me); the server still judges.
export function may(action: string): boolean {
  return (session.staff?.actions ?? []).includes(action)
}
