import { createApp } from 'vue'
// Element Plus components come with the pages that use them (see
// vite.config.ts); the message boxes called from scripts bring their CSS here.
import 'element-plus/theme-chalk/base.css'
import 'element-plus/es/components/message/style/css'
import 'element-plus/es/components/message-box/style/css'
import './style.css'
import App from './App.vue'
import { router } from './router'
import { session } from './session'

session.load()
createApp(App).use(router).mount('#app')
