// Command baregin is the ceiling for careloop's /healthz benchmark: a bare
// Gin engine answering {"status":"ok"} with no middleware at all.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18181", "listen address")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	log.Fatal(http.ListenAndServe(*addr, r))
}
