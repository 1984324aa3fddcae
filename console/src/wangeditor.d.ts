// @wangeditor/editor-for-vue ships types its package.json "exports" hide
// from TypeScript's bundler resolution: its two components, declared here.
declare module '@wangeditor/editor-for-vue' {
  import type { DefineComponent } from 'vue'
  export const Editor: DefineComponent<Record<string, unknown>, Record<string, unknown>, unknown>
  export const Toolbar: DefineComponent<Record<string, unknown>, Record<string, unknown>, unknown>
}
